// The loop body is checkpointed: its intermediates are recomputed backward.
func.func @f(%x: tensor<3xf64>, %w: tensor<3xf64>) -> tensor<f64> {
  %lb = arith.constant 0 : index
  %ub = arith.constant 5 : index
  %st = arith.constant 1 : index
  %r = scf.for %i = %lb to %ub step %st iter_args(%h = %x) -> (tensor<3xf64>) {
    %y, %u = ln.checkpoint -> (tensor<3xf64>, tensor<3xf64>) {
      %a = ln.mul %h, %w : tensor<3xf64>, tensor<3xf64>
      %b = ln.tanh %a : tensor<3xf64>
      %c = ln.add %b, %x : tensor<3xf64>, tensor<3xf64>
      ln.checkpoint_yield %c, %w : tensor<3xf64>, tensor<3xf64>
    }
    %v = ln.mul %y, %u : tensor<3xf64>, tensor<3xf64>
    scf.yield %v : tensor<3xf64>
  }
  %t = ln.sum %r {axes = array<i64: 0>} : tensor<3xf64>
  func.return %t : tensor<f64>
}
