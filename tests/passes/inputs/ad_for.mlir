// A recurrence over 100 iterations: h <- tanh(h * w) + x.
func.func @f(%x: tensor<f64>, %w: tensor<f64>) -> tensor<f64> {
  %lb = arith.constant 0 : index
  %ub = arith.constant 100 : index
  %st = arith.constant 1 : index
  %r = scf.for %i = %lb to %ub step %st iter_args(%h = %x) -> (tensor<f64>) {
    %a = ln.mul %h, %w : tensor<f64>, tensor<f64>
    %b = ln.tanh %a : tensor<f64>
    %c = ln.add %b, %x : tensor<f64>, tensor<f64>
    scf.yield %c : tensor<f64>
  }
  func.return %r : tensor<f64>
}
