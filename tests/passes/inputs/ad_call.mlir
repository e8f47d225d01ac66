// A differentiated callee, called twice; its continuation crosses the return.
func.func @g(%a: tensor<f64>, %b: tensor<f64>) -> tensor<f64> {
  %p = ln.mul %a, %b : tensor<f64>, tensor<f64>
  %t = ln.sigmoid %p : tensor<f64>
  func.return %t : tensor<f64>
}
func.func @f(%x: tensor<f64>, %w: tensor<f64>) -> tensor<f64> {
  %u = func.call @g(%x, %w) : (tensor<f64>, tensor<f64>) -> tensor<f64>
  %v = func.call @g(%u, %x) : (tensor<f64>, tensor<f64>) -> tensor<f64>
  %s = ln.div %v, %w : tensor<f64>, tensor<f64>
  func.return %s : tensor<f64>
}
