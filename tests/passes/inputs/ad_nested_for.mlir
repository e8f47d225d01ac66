// Nested loops with a carried value passed through unchanged (%p), one handed
// on to another position (%acc <- %q) and a counter that is not differentiated.
func.func @f(%x: tensor<3xf64>, %w: tensor<3xf64>) -> tensor<f64> {
  %lb = arith.constant 0 : index
  %n = arith.constant 4 : index
  %m = arith.constant 3 : index
  %st = arith.constant 1 : index
  %one = arith.constant 1 : index
  %z = ln.zeros : tensor<3xf64>
  %r:4 = scf.for %i = %lb to %n step %st iter_args(%h = %x, %p = %w, %acc = %z, %cnt = %lb) -> (tensor<3xf64>, tensor<3xf64>, tensor<3xf64>, index) {
    %q = scf.for %j = %lb to %m step %st iter_args(%g = %h) -> (tensor<3xf64>) {
      %a = ln.mul %g, %p : tensor<3xf64>, tensor<3xf64>
      %b = ln.tanh %a : tensor<3xf64>
      scf.yield %b : tensor<3xf64>
    }
    %c = ln.add %q, %acc : tensor<3xf64>, tensor<3xf64>
    %cnt2 = arith.addi %cnt, %one : index
    scf.yield %c, %p, %q, %cnt2 : tensor<3xf64>, tensor<3xf64>, tensor<3xf64>, index
  }
  %s = ln.mul %r#0, %r#2 : tensor<3xf64>, tensor<3xf64>
  %t = ln.sum %s {axes = array<i64: 0>} : tensor<3xf64>
  func.return %t : tensor<f64>
}
