// Both branches differentiate; the continuation after the if is shared.
func.func @f(%x: tensor<f64>, %w: tensor<f64>) -> tensor<f64> {
  %z = ln.zeros : tensor<f64>
  %m = ln.gt %x, %z : tensor<f64>, tensor<f64>
  %c = ln.item %m : tensor<i1>
  %r = scf.if %c -> (tensor<f64>) {
    %a = ln.mul %x, %w : tensor<f64>, tensor<f64>
    %b = ln.tanh %a : tensor<f64>
    scf.yield %b : tensor<f64>
  } else {
    %a = ln.exp %w : tensor<f64>
    %b = ln.mul %a, %x : tensor<f64>, tensor<f64>
    scf.yield %b : tensor<f64>
  }
  %s = ln.mul %r, %r : tensor<f64>, tensor<f64>
  func.return %s : tensor<f64>
}
