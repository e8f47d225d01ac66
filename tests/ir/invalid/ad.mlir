// Invalid `ad` ops and types and the diagnostics they must produce (run by
// test_invalid.py).
//
// Cases are separated by lines reading exactly `// -----`. Each case holds one
// line `// expected-error@+N {{text}}` (as in MLIR's -verify-diagnostics):
// parsing and verifying the case must fail, the diagnostic must contain `text`,
// and it must belong to the line N lines below the comment. Parse errors carry
// their own line; for verifier errors the op (or type) named in `text` must be
// on that line. The custom syntax derives result types from the cell type, so
// mismatched results are written in generic form.

func.func @accum_value_type(%c: !ad.cell<tensor<3xf32>>, %g: tensor<3xf64>) {
  // expected-error@+1 {{operand is used with type tensor<3xf32>, but has been previously used or defined with type tensor<3xf64>}}
  ad.accum %c, %g : !ad.cell<tensor<3xf32>>
  func.return
}

// -----

func.func @accum_value_type_generic(%c: !ad.cell<tensor<3xf32>>, %g: tensor<3xf64>) {
  // expected-error@+1 {{'ad.accum': value has type tensor<3xf64> but the cell holds tensor<3xf32>}}
  "ad.accum"(%c, %g) : (!ad.cell<tensor<3xf32>>, tensor<3xf64>) -> ()
  func.return
}

// -----

func.func @accum_value_shape_generic(%c: !ad.cell<tensor<3xf32>>, %g: tensor<1x3xf32>) {
  // expected-error@+1 {{'ad.accum': value has type tensor<1x3xf32> but the cell holds tensor<3xf32>}}
  "ad.accum"(%c, %g) : (!ad.cell<tensor<3xf32>>, tensor<1x3xf32>) -> ()
  func.return
}

// -----

func.func @accum_into_a_tensor(%c: tensor<3xf32>, %g: tensor<3xf32>) {
  // expected-error@+1 {{expected an !ad.cell<...> type, got tensor<3xf32>}}
  ad.accum %c, %g : tensor<3xf32>
  func.return
}

// -----

func.func @load_from_a_tensor(%c: tensor<3xf32>) {
  // expected-error@+1 {{expected an !ad.cell<...> type, got tensor<3xf32>}}
  %g = ad.load %c : tensor<3xf32>
  func.return
}

// -----

func.func @load_result_generic(%c: !ad.cell<tensor<3xf32>>) {
  // expected-error@+1 {{'ad.load': result tensor<3xf64> does not match the cell's tensor<3xf32>}}
  %g = "ad.load"(%c) : (!ad.cell<tensor<3xf32>>) -> tensor<3xf64>
  func.return
}

// -----

func.func @zero_like_result_generic(%v: tensor<3xf32>) {
  // expected-error@+1 {{'ad.zero_like': result !ad.cell<tensor<3xf64>> must be !ad.cell<tensor<3xf32>>}}
  %c = "ad.zero_like"(%v) : (tensor<3xf32>) -> !ad.cell<tensor<3xf64>>
  func.return
}

// -----

func.func @zero_like_result_shape_generic(%v: tensor<2x3xf32>) {
  // expected-error@+1 {{'ad.zero_like': result !ad.cell<tensor<3x2xf32>> must be !ad.cell<tensor<2x3xf32>>}}
  %c = "ad.zero_like"(%v) : (tensor<2x3xf32>) -> !ad.cell<tensor<3x2xf32>>
  func.return
}

// -----

// expected-error@+1 {{!ad.cell holds a tensor type, got f32}}
func.func @cell_of_a_scalar(%c: !ad.cell<f32>) {
  func.return
}

// -----

// expected-error@+1 {{!ad.cell holds a tensor type, got !ad.cell<tensor<3xf32>>}}
func.func @cell_of_a_cell(%c: !ad.cell<!ad.cell<tensor<3xf32>>>) {
  func.return
}

// -----

func.func @push_wrong_type(%s: !ad.stack<tensor<3xf32>>, %v: tensor<3xf64>) {
  // expected-error@+1 {{'ad.push': value has type tensor<3xf64> but the stack holds tensor<3xf32>}}
  "ad.push"(%s, %v) : (!ad.stack<tensor<3xf32>>, tensor<3xf64>) -> ()
  func.return
}

// -----

func.func @pop_wrong_type(%s: !ad.stack<index>) {
  // expected-error@+1 {{'ad.pop': result i64 does not match the stack's index}}
  %v = "ad.pop"(%s) : (!ad.stack<index>) -> i64
  func.return
}

// -----

func.func @push_not_a_stack(%c: !ad.cell<tensor<3xf32>>, %v: tensor<3xf32>) {
  // expected-error@+1 {{expected an !ad.stack<...> type, got !ad.cell<tensor<3xf32>>}}
  ad.push %c, %v : !ad.cell<tensor<3xf32>>
  func.return
}

// -----

func.func @accum_matmul_shape(%c: !ad.cell<tensor<2x4xf32>>, %a: tensor<2x3xf32>, %b: tensor<3x5xf32>) {
  // expected-error@+1 {{'ad.accum_matmul': the product is 2x5 but the cell holds tensor<2x4xf32>}}
  ad.accum_matmul %c, %a, %b : !ad.cell<tensor<2x4xf32>>, tensor<2x3xf32>, tensor<3x5xf32>
  func.return
}

// -----

func.func @accum_matmul_contracting(%c: !ad.cell<tensor<2x4xf32>>, %a: tensor<2x3xf32>, %b: tensor<3x4xf32>) {
  // expected-error@+1 {{'ad.accum_matmul': lhs tensor<2x3xf32> and rhs tensor<3x4xf32> have incompatible contracting dimensions 2 and 3}}
  ad.accum_matmul %c, %a, %b {transpose_a} : !ad.cell<tensor<2x4xf32>>, tensor<2x3xf32>, tensor<3x4xf32>
  func.return
}

// -----

func.func @accum_matmul_vector(%c: !ad.cell<tensor<2xf32>>, %a: tensor<2x3xf32>, %b: tensor<3xf32>) {
  // expected-error@+1 {{'ad.accum_matmul': the cell and both operands must be matrices}}
  ad.accum_matmul %c, %a, %b : !ad.cell<tensor<2xf32>>, tensor<2x3xf32>, tensor<3xf32>
  func.return
}

// -----

func.func @accum_matmul_into_a_tensor(%c: tensor<2x4xf32>, %a: tensor<2x3xf32>, %b: tensor<3x4xf32>) {
  // expected-error@+1 {{'ad.accum_matmul' writes into a cell, got tensor<2x4xf32>}}
  ad.accum_matmul %c, %a, %b : tensor<2x4xf32>, tensor<2x3xf32>, tensor<3x4xf32>
  func.return
}

// -----

func.func @accum_slice_does_not_fit(%c: !ad.cell<tensor<2x5xf32>>, %g: tensor<2x2xf32>) {
  // expected-error@+1 {{'ad.accum_slice': piece tensor<2x2xf32> at offset 4 of axis 1 does not fit in !ad.cell<tensor<2x5xf32>>}}
  ad.accum_slice %c, %g {axis = 1 : i64, offset = 4 : i64} : !ad.cell<tensor<2x5xf32>>, tensor<2x2xf32>
  func.return
}

// -----

func.func @accum_slice_element_type(%c: !ad.cell<tensor<2x5xf32>>, %g: tensor<2x2xf64>) {
  // expected-error@+1 {{'ad.accum_slice': piece tensor<2x2xf64> does not match the element type of !ad.cell<tensor<2x5xf32>>}}
  ad.accum_slice %c, %g {axis = 1 : i64, offset = 0 : i64} : !ad.cell<tensor<2x5xf32>>, tensor<2x2xf64>
  func.return
}

// -----

func.func @flush_a_tensor(%c: tensor<3xf32>) {
  // expected-error@+1 {{'ad.flush_products' writes into a cell, got tensor<3xf32>}}
  ad.flush_products %c : tensor<3xf32>
  func.return
}
