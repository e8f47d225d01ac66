// ln, cont and ad ops together. cse merges the second ln.add into the first;
// dce drops the unused ln.exp; neither may touch the adjoint cell, which is
// written by ad.accum, nor the continuation ops.
func.func @f(%a: tensor<3xf32>, %b: tensor<3xf32>) -> tensor<3xf32> {
  %x = ln.add %a, %b : tensor<3xf32>, tensor<3xf32>
  %y = ln.add %a, %b : tensor<3xf32>, tensor<3xf32>
  %unused = ln.exp %a : tensor<3xf32>
  %z = ln.mul %x, %y : tensor<3xf32>, tensor<3xf32>
  %cell = ad.zero_like %z : tensor<3xf32>
  ad.accum %cell, %z : !ad.cell<tensor<3xf32>>
  %r = cont.reset -> (tensor<3xf32>) {
    %t = cont.shift %k : !cont.k<(tensor<3xf32>) -> (tensor<3xf32>)> {
      %ans = cont.resume %k(%z) : !cont.k<(tensor<3xf32>) -> (tensor<3xf32>)>
      cont.yield %ans : tensor<3xf32>
    }
    cont.yield %t : tensor<3xf32>
  }
  func.return %r : tensor<3xf32>
}
