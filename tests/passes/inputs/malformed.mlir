// Operand types disagree with the definition of %a (line 4, column 19).
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  %x = ln.exp %a : tensor<3xf32>
  %y = ln.add %x, %a : tensor<3xf32>, tensor<4xf32>
  func.return %y : tensor<3xf32>
}
