func.func @loss(%w: tensor<8x16xf32>, %x: tensor<4x8xf32>) -> tensor<f32> {
  %h = ln.matmul %x, %w : tensor<4x8xf32>, tensor<8x16xf32>
  %a = ln.tanh %h : tensor<4x16xf32>
  %l = ln.sum %a {axes = array<i64: 0, 1>} : tensor<4x16xf32>
  func.return %l : tensor<f32>
}
