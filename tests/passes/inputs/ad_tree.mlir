// A recursive function over a binary tree encoded as index arrays:
// node i is a leaf when left[i] < 0; leaves score u * feat[i], inner nodes
// tanh(w * (score(left) + score(right)) + feat[i]).
func.func @node(%i: i64, %left: tensor<7xi64>, %right: tensor<7xi64>, %feat: tensor<7xf64>, %w: tensor<f64>, %u: tensor<f64>) -> tensor<f64> {
  %it = ln.from_scalar %i : i64
  %x = ln.gather %feat, %it : tensor<7xf64>, tensor<i64>
  %l = ln.gather %left, %it : tensor<7xi64>, tensor<i64>
  %li = ln.item %l : tensor<i64>
  %zero = arith.constant 0 : i64
  %is_leaf = arith.cmpi slt, %li, %zero : i64
  %r = scf.if %is_leaf -> (tensor<f64>) {
    %y = ln.mul %x, %u : tensor<f64>, tensor<f64>
    scf.yield %y : tensor<f64>
  } else {
    %rt = ln.gather %right, %it : tensor<7xi64>, tensor<i64>
    %ri = ln.item %rt : tensor<i64>
    %a = func.call @node(%li, %left, %right, %feat, %w, %u) : (i64, tensor<7xi64>, tensor<7xi64>, tensor<7xf64>, tensor<f64>, tensor<f64>) -> tensor<f64>
    %b = func.call @node(%ri, %left, %right, %feat, %w, %u) : (i64, tensor<7xi64>, tensor<7xi64>, tensor<7xf64>, tensor<f64>, tensor<f64>) -> tensor<f64>
    %s = ln.add %a, %b : tensor<f64>, tensor<f64>
    %m = ln.mul %s, %w : tensor<f64>, tensor<f64>
    %h = ln.add %m, %x : tensor<f64>, tensor<f64>
    %t = ln.tanh %h : tensor<f64>
    scf.yield %t : tensor<f64>
  }
  func.return %r : tensor<f64>
}
func.func @f(%feat: tensor<7xf64>, %w: tensor<f64>, %u: tensor<f64>, %left: tensor<7xi64>, %right: tensor<7xi64>) -> tensor<f64> {
  %root = arith.constant 0 : i64
  %v = func.call @node(%root, %left, %right, %feat, %w, %u) : (i64, tensor<7xi64>, tensor<7xi64>, tensor<7xf64>, tensor<f64>, tensor<f64>) -> tensor<f64>
  func.return %v : tensor<f64>
}
