// Invalid `cont` ops and the diagnostics they must produce (run by test_invalid.py).
//
// Cases are separated by lines reading exactly `// -----`. Each case holds one
// line `// expected-error@+N {{text}}` (as in MLIR's -verify-diagnostics):
// parsing and verifying the case must fail, the diagnostic must contain `text`,
// and it must belong to the line N lines below the comment. Parse errors carry
// their own line; for verifier errors the op named in `text` must be the op on
// that line. The custom syntax derives a shift's results and a lambda's self
// argument from their types, so those mistakes are written in generic form.

func.func @shift_results(%x: f32) {
  %r = cont.reset -> (f32) {
    // expected-error@+1 {{'cont.shift': results (f64) must equal the continuation's inputs (f32)}}
    %y = "cont.shift"() ({
    ^bb0(%k: !cont.k<(f32) -> (f32)>):
      cont.yield %x : f32
    }) : () -> f64
    cont.yield %x : f32
  }
  func.return
}

// -----

func.func @shift_answer(%x: f32, %d: f64) {
  %r = cont.reset -> (f32) {
    // expected-error@+1 {{'cont.shift': body yields (f64) but the continuation's answer is (f32)}}
    %y = cont.shift %k : !cont.k<(f32) -> (f32)> {
      cont.yield %d : f64
    }
    cont.yield %y : f32
  }
  func.return
}

// -----

func.func @shift_not_a_continuation(%x: f32) {
  %r = cont.reset -> (f32) {
    // expected-error@+1 {{expected a !cont.k<...> type, got f32}}
    %y = cont.shift %k : f32 {
      cont.yield %x : f32
    }
    cont.yield %y : f32
  }
  func.return
}

// -----

func.func @shift_two_block_arguments(%x: f32) {
  %r = cont.reset -> (f32) {
    // expected-error@+1 {{'cont.shift': body must take exactly one argument of type !cont.k<...>}}
    %y = "cont.shift"() ({
    ^bb0(%k: !cont.k<(f32) -> (f32)>, %z: f32):
      cont.yield %x : f32
    }) : () -> f32
    cont.yield %y : f32
  }
  func.return
}

// -----

func.func @resume_count(%x: f32) {
  %r = cont.reset -> (f32) {
    %y = cont.shift %k : !cont.k<(f32) -> (f32)> {
      // expected-error@+1 {{2 arguments given to a !cont.k<...> taking 1}}
      %a = cont.resume %k(%x, %x) : !cont.k<(f32) -> (f32)>
      cont.yield %a : f32
    }
    cont.yield %y : f32
  }
  func.return
}

// -----

func.func @resume_argument_type(%x: f32, %d: f64) {
  %r = cont.reset -> (f32) {
    %y = cont.shift %k : !cont.k<(f32) -> (f32)> {
      // expected-error@+1 {{operand is used with type f32, but has been previously used or defined with type f64}}
      %a = cont.resume %k(%d) : !cont.k<(f32) -> (f32)>
      cont.yield %a : f32
    }
    cont.yield %y : f32
  }
  func.return
}

// -----

func.func @resume_argument_type_generic(%x: f32, %d: f64) {
  %r = cont.reset -> (f32) {
    %y = cont.shift %k : !cont.k<(f32) -> (f32)> {
      // expected-error@+1 {{'cont.resume': arguments (f64) do not match the continuation's inputs (f32)}}
      %a = "cont.resume"(%k, %d) : (!cont.k<(f32) -> (f32)>, f64) -> f32
      cont.yield %a : f32
    }
    cont.yield %y : f32
  }
  func.return
}

// -----

func.func @resume_results_generic(%x: f32) {
  %r = cont.reset -> (f32) {
    %y = cont.shift %k : !cont.k<(f32) -> (f32)> {
      // expected-error@+1 {{'cont.resume': results (f64) do not match the continuation's outputs (f32)}}
      %a = "cont.resume"(%k, %x) : (!cont.k<(f32) -> (f32)>, f32) -> f64
      cont.yield %x : f32
    }
    cont.yield %y : f32
  }
  func.return
}

// -----

func.func @resume_a_closure(%f: !cont.closure<(f32) -> (f32)>, %x: f32) {
  // expected-error@+1 {{expected a !cont.k<...> type, got !cont.closure<(f32) -> (f32)>}}
  %a = cont.resume %f(%x) : !cont.closure<(f32) -> (f32)>
  func.return
}

// -----

func.func @yield_in_scf_if(%b: i1) {
  scf.if %b {
    // expected-error@+1 {{'cont.yield' must end the body of cont.reset, cont.shift or cont.lambda}}
    cont.yield
  }
  func.return
}

// -----

func.func @yield_ends_a_function(%x: f32) -> f32 {
  // expected-error@+1 {{'cont.yield' must end the body of cont.reset, cont.shift or cont.lambda}}
  cont.yield %x : f32
}

// -----

func.func @reset_answer(%x: f32, %d: f64) {
  // expected-error@+1 {{'cont.reset': body yields (f64) but the reset's result is (f32)}}
  %r = cont.reset -> (f32) {
    cont.yield %d : f64
  }
  func.return
}

// -----

func.func @reset_answer_count(%x: f32) {
  // expected-error@+1 {{'cont.reset': body yields (f32, f32) but the reset's result is (f32)}}
  %r = cont.reset -> (f32) {
    cont.yield %x, %x : f32, f32
  }
  func.return
}

// -----

func.func @reset_block_argument(%x: f32) {
  // expected-error@+1 {{'cont.reset': body takes no arguments}}
  %r = "cont.reset"() ({
  ^bb0(%a: f32):
    cont.yield %a : f32
  }) : () -> f32
  func.return
}

// -----

func.func @lambda_parameters() {
  // expected-error@+1 {{'cont.lambda': parameters (f64) do not match the closure type's inputs (f32)}}
  %f = "cont.lambda"() ({
  ^bb0(%x: f64):
    cont.yield %x : f64
  }) : () -> !cont.closure<(f32) -> (f64)>
  func.return
}

// -----

func.func @lambda_result(%d: f64) {
  // expected-error@+1 {{'cont.lambda': body yields (f32) but the closure's result is (f64)}}
  %f = cont.lambda (%x: f32) -> (f64) {
    cont.yield %x : f32
  }
  func.return
}

// -----

func.func @lambda_rec_self_type() {
  // expected-error@+1 {{'cont.lambda': a recursive lambda's first argument must have its own type !cont.closure<(f32) -> (f32)>}}
  %f = "cont.lambda"() <{recursive}> ({
  ^bb0(%self: f32, %x: f32):
    cont.yield %x : f32
  }) : () -> !cont.closure<(f32) -> (f32)>
  func.return
}

// -----

func.func @lambda_rec_without_self() {
  // expected-error@+1 {{'cont.lambda': a recursive lambda's first argument must have its own type !cont.closure<() -> ()>}}
  %f = "cont.lambda"() <{recursive}> ({
    cont.yield
  }) : () -> !cont.closure<() -> ()>
  func.return
}

// -----

func.func @lambda_two_results() {
  // expected-error@+1 {{'cont.lambda' has exactly one result}}
  %f, %g = "cont.lambda"() ({
    cont.yield
  }) : () -> (!cont.closure<() -> ()>, !cont.closure<() -> ()>)
  func.return
}

// -----

func.func @apply_count(%f: !cont.closure<(f32) -> (f32)>, %x: f32) {
  // expected-error@+1 {{0 arguments given to a !cont.closure<...> taking 1}}
  %y = cont.apply %f() : !cont.closure<(f32) -> (f32)>
  func.return
}

// -----

func.func @apply_argument_type(%f: !cont.closure<(f32) -> (f32)>, %d: f64) {
  // expected-error@+1 {{operand is used with type f32, but has been previously used or defined with type f64}}
  %y = cont.apply %f(%d) : !cont.closure<(f32) -> (f32)>
  func.return
}

// -----

func.func @apply_argument_type_generic(%f: !cont.closure<(f32) -> (f32)>, %d: f64) {
  // expected-error@+1 {{'cont.apply': arguments (f64) do not match the closure's inputs (f32)}}
  %y = "cont.apply"(%f, %d) : (!cont.closure<(f32) -> (f32)>, f64) -> f32
  func.return
}

// -----

func.func @apply_results_generic(%f: !cont.closure<(f32) -> (f32)>, %x: f32) {
  // expected-error@+1 {{'cont.apply': results (f64) do not match the closure's outputs (f32)}}
  %y = "cont.apply"(%f, %x) : (!cont.closure<(f32) -> (f32)>, f32) -> f64
  func.return
}

// -----

// expected-error@+1 {{'(' expected}}
func.func @continuation_type_without_signature(%k: !cont.k<f32>) {
  func.return
}
