// Adjoint cells have effects: cse must keep two cells of the same value apart
// and must not merge loads of a cell across an ad.accum into it. Two loads with
// nothing written in between may merge.
func.func @cells(%a: tensor<3xf32>, %g: tensor<3xf32>) -> tensor<3xf32> {
  %c1 = ad.zero_like %a : tensor<3xf32>
  %c2 = ad.zero_like %a : tensor<3xf32>
  ad.accum %c1, %g : !ad.cell<tensor<3xf32>>
  %l1 = ad.load %c1 : !ad.cell<tensor<3xf32>>
  ad.accum %c1, %g : !ad.cell<tensor<3xf32>>
  %l2 = ad.load %c1 : !ad.cell<tensor<3xf32>>
  %l2b = ad.load %c1 : !ad.cell<tensor<3xf32>>
  ad.accum %c2, %l1 : !ad.cell<tensor<3xf32>>
  %l3 = ad.load %c2 : !ad.cell<tensor<3xf32>>
  %s = ln.add %l1, %l2 : tensor<3xf32>, tensor<3xf32>
  %t = ln.add %s, %l2b : tensor<3xf32>, tensor<3xf32>
  %u = ln.add %t, %l3 : tensor<3xf32>, tensor<3xf32>
  func.return %u : tensor<3xf32>
}
