// A loop whose body branches on the data: reverse-loops leaves it to
// lower-continuations (a recursive closure).
func.func @f(%x: tensor<f64>, %w: tensor<f64>) -> tensor<f64> {
  %lb = arith.constant 0 : index
  %ub = arith.constant 6 : index
  %st = arith.constant 1 : index
  %z = ln.zeros : tensor<f64>
  %r = scf.for %i = %lb to %ub step %st iter_args(%h = %x) -> (tensor<f64>) {
    %m = ln.gt %h, %z : tensor<f64>, tensor<f64>
    %c = ln.item %m : tensor<i1>
    %y = scf.if %c -> (tensor<f64>) {
      %a = ln.mul %h, %w : tensor<f64>, tensor<f64>
      %b = ln.tanh %a : tensor<f64>
      scf.yield %b : tensor<f64>
    } else {
      %a = ln.exp %h : tensor<f64>
      scf.yield %a : tensor<f64>
    }
    %d = ln.sub %y, %w : tensor<f64>, tensor<f64>
    scf.yield %d : tensor<f64>
  }
  func.return %r : tensor<f64>
}
