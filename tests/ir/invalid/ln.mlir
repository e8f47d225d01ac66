// Invalid `ln` ops and the diagnostics they must produce (run by test_invalid.py).
//
// Cases are separated by lines reading exactly `// -----`. Each case holds one
// line `// expected-error@+N {{text}}` (as in MLIR's -verify-diagnostics):
// parsing and verifying the case must fail, the diagnostic must contain `text`,
// and it must belong to the line N lines below the comment. Parse errors carry
// their own line; for verifier errors (generic syntax) the op named in `text`
// must be the op on that line.

func.func @add_shapes(%a: tensor<2x3xf32>, %b: tensor<4xf32>) {
  // expected-error@+1 {{'ln.add': operand shapes (2, 3) and (4,) do not broadcast}}
  %c = ln.add %a, %b : tensor<2x3xf32>, tensor<4xf32>
  func.return
}

// -----

func.func @add_elements(%a: tensor<3xf32>, %b: tensor<3xf64>) {
  // expected-error@+1 {{'ln.add': operand element types differ: lhs f32, rhs f64}}
  %c = ln.add %a, %b : tensor<3xf32>, tensor<3xf64>
  func.return
}

// -----

func.func @exp_int(%a: tensor<3xi32>) {
  // expected-error@+1 {{'ln.exp': operand must have a float element type, got i32}}
  %c = ln.exp %a : tensor<3xi32>
  func.return
}

// -----

func.func @generic_wrong_result(%a: tensor<3xf32>, %b: tensor<3xf32>) {
  // expected-error@+1 {{'ln.mul': result type tensor<4xf32> does not match the inferred type tensor<3xf32>}}
  %c = "ln.mul"(%a, %b) : (tensor<3xf32>, tensor<3xf32>) -> tensor<4xf32>
  func.return
}

// -----

func.func @matmul_dims(%a: tensor<2x3xf32>, %b: tensor<4x5xf32>) {
  // expected-error@+1 {{'ln.matmul': lhs tensor<2x3xf32> and rhs tensor<4x5xf32> have incompatible contracting dimensions 3 and 4}}
  %c = ln.matmul %a, %b : tensor<2x3xf32>, tensor<4x5xf32>
  func.return
}

// -----

func.func @matmul_batch(%a: tensor<2x3x4xf64>, %b: tensor<3x4x5xf64>) {
  // expected-error@+1 {{'ln.matmul': lhs tensor<2x3x4xf64> and rhs tensor<3x4x5xf64> have different batch dimensions 2 and 3}}
  %c = ln.matmul %a, %b : tensor<2x3x4xf64>, tensor<3x4x5xf64>
  func.return
}

// -----

func.func @matmul_ints(%a: tensor<2x3xi32>, %b: tensor<3x2xi32>) {
  // expected-error@+1 {{'ln.matmul': lhs must have a float element type, got i32}}
  %c = ln.matmul %a, %b : tensor<2x3xi32>, tensor<3x2xi32>
  func.return
}

// -----

func.func @reshape_count(%a: tensor<2x3xf32>) {
  // expected-error@+1 {{'ln.reshape': operand tensor<2x3xf32> has 6 elements but result tensor<4x2xf32> has 8}}
  %c = ln.reshape %a : tensor<2x3xf32> -> tensor<4x2xf32>
  func.return
}

// -----

func.func @transpose_perm(%a: tensor<2x3x4xf32>) {
  // expected-error@+1 {{'ln.transpose': perm (0, 2, 2) is not a permutation of the 3 dimensions of tensor<2x3x4xf32>}}
  %c = ln.transpose %a {perm = array<i64: 0, 2, 2>} : tensor<2x3x4xf32>
  func.return
}

// -----

func.func @broadcast_to(%a: tensor<3x2xf32>) {
  // expected-error@+1 {{'ln.broadcast_to': operand tensor<3x2xf32> does not broadcast to tensor<3x4xf32>}}
  %c = ln.broadcast_to %a : tensor<3x2xf32> -> tensor<3x4xf32>
  func.return
}

// -----

func.func @sum_axis_range(%a: tensor<2x3xf32>) {
  // expected-error@+1 {{'ln.sum': axes (0, 2) must be sorted, unique and in [0, 2) for operand tensor<2x3xf32>}}
  %c = ln.sum %a {axes = array<i64: 0, 2>} : tensor<2x3xf32>
  func.return
}

// -----

func.func @mean_axes_unsorted(%a: tensor<2x3xf32>) {
  // expected-error@+1 {{'ln.mean': axes (1, 0) must be sorted, unique and in [0, 2)}}
  %c = ln.mean %a {axes = array<i64: 1, 0>} : tensor<2x3xf32>
  func.return
}

// -----

func.func @softmax_axis(%a: tensor<2x3xf32>) {
  // expected-error@+1 {{'ln.softmax': axis 2 must be in [0, 2) for operand tensor<2x3xf32>}}
  %c = ln.softmax %a {axis = 2 : i64} : tensor<2x3xf32>
  func.return
}

// -----

func.func @concatenate(%a: tensor<2x3xf32>, %b: tensor<3x3xf32>) {
  // expected-error@+1 {{'ln.concatenate': operand #1 tensor<3x3xf32> does not match operand #0 tensor<2x3xf32> outside axis 1}}
  %c = ln.concatenate %a, %b {axis = 1 : i64} : tensor<2x3xf32>, tensor<3x3xf32>
  func.return
}

// -----

func.func @slice_bounds(%a: tensor<4x3xf32>) {
  // expected-error@+1 {{'ln.slice': range [1, 5) in dimension 0 is not within [0, 4]}}
  %c = ln.slice %a {start = array<i64: 1, 0>, stop = array<i64: 5, 3>, step = array<i64: 1, 1>} : tensor<4x3xf32>
  func.return
}

// -----

func.func @slice_step(%a: tensor<4xf32>) {
  // expected-error@+1 {{'ln.slice': step -1 in dimension 0 is not positive}}
  %c = ln.slice %a {start = array<i64: 0>, stop = array<i64: 4>, step = array<i64: -1>} : tensor<4xf32>
  func.return
}

// -----

func.func @gather_float_indices(%t: tensor<10x4xf32>, %i: tensor<3xf32>) {
  // expected-error@+1 {{'ln.gather': indices tensor<3xf32> must have element type i32 or i64, got f32}}
  %c = ln.gather %t, %i : tensor<10x4xf32>, tensor<3xf32>
  func.return
}

// -----

func.func @scatter_add_shape(%u: tensor<3x5xf32>, %i: tensor<3xi64>) {
  // expected-error@+1 {{'ln.scatter_add': updates tensor<3x5xf32> must have shape (3, 4)}}
  %c = ln.scatter_add %u, %i : tensor<3x5xf32>, tensor<3xi64> -> tensor<10x4xf32>
  func.return
}

// -----

func.func @item_rank(%a: tensor<3xf32>) {
  // expected-error@+1 {{'ln.item': operand must be a rank-0 tensor, got tensor<3xf32>}}
  %c = ln.item %a : tensor<3xf32>
  func.return
}

// -----

func.func @item_generic_result(%a: tensor<f32>) {
  // expected-error@+1 {{'ln.item': result type f64 does not match the inferred type f32}}
  %c = "ln.item"(%a) : (tensor<f32>) -> f64
  func.return
}

// -----

func.func @from_scalar_index(%s: index) {
  // expected-error@+1 {{'ln.from_scalar': operand must be a scalar f32, f64, i32, i64 or i1, got index}}
  %c = ln.from_scalar %s : index
  func.return
}

// -----

func.func @nll_reduction(%p: tensor<4x5xf32>, %t: tensor<4xi64>) {
  // expected-error@+1 {{'ln.nll_loss': reduction must be "mean" or "sum", got "none"}}
  %c = ln.nll_loss %p, %t {reduction = "none"} : tensor<4x5xf32>, tensor<4xi64>
  func.return
}

// -----

func.func @cross_entropy_rows(%z: tensor<4x5xf32>, %t: tensor<3xi64>) {
  // expected-error@+1 {{'ln.cross_entropy': target tensor<3xi64> has 3 entries but logits tensor<4x5xf32> has 4 rows}}
  %c = ln.cross_entropy %z, %t {reduction = "mean"} : tensor<4x5xf32>, tensor<3xi64>
  func.return
}

// -----

func.func @conv2d_channels(%x: tensor<1x3x8x8xf32>, %w: tensor<4x2x3x3xf32>) {
  // expected-error@+1 {{'ln.conv2d': input tensor<1x3x8x8xf32> has 3 channels but weight tensor<4x2x3x3xf32> expects 2}}
  %c = ln.conv2d %x, %w {stride = array<i64: 1, 1>, padding = array<i64: 0, 0>} : tensor<1x3x8x8xf32>, tensor<4x2x3x3xf32>
  func.return
}

// -----

func.func @conv2d_kernel(%x: tensor<1x1x2x2xf32>, %w: tensor<1x1x3x3xf32>) {
  // expected-error@+1 {{'ln.conv2d': kernel height 3 exceeds the padded input height 2}}
  %c = ln.conv2d %x, %w {stride = array<i64: 1, 1>, padding = array<i64: 0, 0>} : tensor<1x1x2x2xf32>, tensor<1x1x3x3xf32>
  func.return
}

// -----

func.func @max_pool_padding(%x: tensor<1x1x4x4xf32>) {
  // expected-error@+1 {{'ln.max_pool2d': padding (2, 0) exceeds half the kernel (2, 2)}}
  %c = ln.max_pool2d %x {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 2, 0>} : tensor<1x1x4x4xf32>
  func.return
}

// -----

func.func @max_pool_grad_type(%x: tensor<1x1x4x4xf32>, %g: tensor<1x1x3x3xf32>) {
  // expected-error@+1 {{'ln.max_pool2d_grad': g tensor<1x1x3x3xf32> must have the type tensor<1x1x2x2xf32> of the pooled input tensor<1x1x4x4xf32>}}
  %c = ln.max_pool2d_grad %x, %g {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 0, 0>} : tensor<1x1x4x4xf32>, tensor<1x1x3x3xf32>
  func.return
}

// -----

func.func @max_pool_grad_padding(%x: tensor<1x1x4x4xf32>, %g: tensor<1x1x2x2xf32>) {
  // expected-error@+1 {{'ln.max_pool2d_grad': padding (2, 0) exceeds half the kernel (2, 2)}}
  %c = ln.max_pool2d_grad %x, %g {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, padding = array<i64: 2, 0>} : tensor<1x1x4x4xf32>, tensor<1x1x2x2xf32>
  func.return
}

// -----

func.func @avg_pool_stride(%x: tensor<1x1x4x4xf32>) {
  // expected-error@+1 {{'ln.avg_pool2d': stride (0, 1) must be two integers >= 1}}
  %c = ln.avg_pool2d %x {kernel = array<i64: 2, 2>, stride = array<i64: 0, 1>, padding = array<i64: 0, 0>} : tensor<1x1x4x4xf32>
  func.return
}

// -----

func.func @dropout_rate(%x: tensor<4xf32>, %s: tensor<i64>) {
  // expected-error@+1 {{'ln.dropout': rate 1.0 must be in [0, 1)}}
  %c = ln.dropout %x, %s {rate = 1.0 : f64} : tensor<4xf32>, tensor<i64>
  func.return
}

// -----

func.func @dropout_seed(%x: tensor<4xf32>, %s: tensor<i32>) {
  // expected-error@+1 {{'ln.dropout': seed must be tensor<i64>, got tensor<i32>}}
  %c = ln.dropout %x, %s {rate = 0.5 : f64} : tensor<4xf32>, tensor<i32>
  func.return
}

// -----

func.func @fused_operand_shape(%a: tensor<4x3xf32>, %b: tensor<2xf32>) {
  // expected-error@+1 {{'ln.fused': operand #1 of shape (2,) does not broadcast to the result shape (4, 3)}}
  %r = ln.fused %a, %b : tensor<4x3xf32>, tensor<2xf32> -> tensor<4x3xf32> {
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    %s = ln.add %x, %y : tensor<f32>, tensor<f32>
    ln.fused_yield %s : tensor<f32>
  }
  func.return
}

// -----

func.func @fused_argument_type(%a: tensor<3xf32>) {
  // expected-error@+1 {{'ln.fused': body argument #0 has type tensor<f64>, expected tensor<f32>}}
  %r = ln.fused %a : tensor<3xf32> -> tensor<3xf64> {
  ^bb0(%x: tensor<f64>):
    %e = ln.exp %x : tensor<f64>
    ln.fused_yield %e : tensor<f64>
  }
  func.return
}

// -----

func.func @fused_body_op(%a: tensor<3xf32>) {
  // expected-error@+1 {{'ln.fused': 'ln.sum' is not an elementwise op and cannot be fused}}
  %r = ln.fused %a : tensor<3xf32> -> tensor<3xf32> {
  ^bb0(%x: tensor<f32>):
    %s = ln.sum %x {axes = array<i64>} : tensor<f32>
    ln.fused_yield %s : tensor<f32>
  }
  func.return
}

// -----

func.func @fused_yield_type(%a: tensor<3xf32>) {
  // expected-error@+1 {{'ln.fused': the body yields tensor<i1>, expected tensor<f32>}}
  %r = ln.fused %a : tensor<3xf32> -> tensor<3xf32> {
  ^bb0(%x: tensor<f32>):
    %m = ln.gt %x, %x : tensor<f32>, tensor<f32>
    ln.fused_yield %m : tensor<i1>
  }
  func.return
}

// -----

func.func @fused_body_rank(%a: tensor<3xf32>) {
  // expected-error@+1 {{'ln.fused': body op 'ln.full' has result type tensor<3xf32>}}
  %r = ln.fused %a : tensor<3xf32> -> tensor<3xf32> {
  ^bb0(%x: tensor<f32>):
    %f = ln.full {value = 2.0 : f64} : tensor<3xf32>
    ln.fused_yield %x : tensor<f32>
  }
  func.return
}

// -----

func.func @fused_captures(%a: tensor<3xf32>, %b: tensor<f32>) {
  // expected-error@+1 {{'ln.fused': the body uses %b, defined outside it}}
  %r = ln.fused %a : tensor<3xf32> -> tensor<3xf32> {
  ^bb0(%x: tensor<f32>):
    %m = ln.mul %x, %b : tensor<f32>, tensor<f32>
    ln.fused_yield %m : tensor<f32>
  }
  func.return
}

// -----

func.func @conv2d_input_grad_wrong_g(%g: tensor<1x3x3x4xf32>, %w: tensor<3x2x3x2xf32>) {
  // expected-error@+1 {{'ln.conv2d_input_grad': g tensor<1x3x3x4xf32> must be the type tensor<1x3x3x6xf32> of conv2d of input tensor<1x2x8x5xf32> and weight tensor<3x2x3x2xf32>}}
  %r = ln.conv2d_input_grad %g, %w {stride = array<i64: 2, 1>, padding = array<i64: 0, 1>} : tensor<1x3x3x4xf32>, tensor<3x2x3x2xf32> -> tensor<1x2x8x5xf32>
  func.return
}
