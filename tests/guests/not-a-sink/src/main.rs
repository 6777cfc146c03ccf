//! A WASI command component (it exports `wasi:cli/run`, not `oort:sink/sink`): loading it as a
//! sink must fail with a clear error.

fn main() {
    println!("I am not a sink");
}
