// Iterate h <- h * w + x until h passes 10: the trip count depends on the data.
func.func @f(%x: tensor<f64>, %w: tensor<f64>) -> tensor<f64> {
  %lim = ln.full {value = 10.0 : f64} : tensor<f64>
  %r = scf.while (%h = %x) : (tensor<f64>) -> (tensor<f64>) {
    %m = ln.lt %h, %lim : tensor<f64>, tensor<f64>
    %c = ln.item %m : tensor<i1>
    scf.condition(%c) %h : tensor<f64>
  } do {
  ^bb0(%h: tensor<f64>):
    %a = ln.mul %h, %w : tensor<f64>, tensor<f64>
    %b = ln.add %a, %x : tensor<f64>, tensor<f64>
    scf.yield %b : tensor<f64>
  }
  %s = ln.sqrt %r : tensor<f64>
  func.return %s : tensor<f64>
}
