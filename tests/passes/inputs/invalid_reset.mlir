// Parses, but the reset's body yields a tensor<3xf32> where the reset
// promises a tensor<f32>: cont.reset's verifier rejects it.
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  %r = cont.reset -> (tensor<f32>) {
    cont.yield %a : tensor<3xf32>
  }
  func.return %a : tensor<3xf32>
}
