// `sqlx::migrate!` (src/startup.rs) embeds the migrations when this crate compiles, and cargo
// does not know it read them: without this a new or edited migration would not be built in.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/inspection");
}
