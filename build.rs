//! Records when this build was made, so that `doctor` can tell a clock that reads earlier (a
//! kiosk booted without a working real-time clock, before NTP) is wrong. `SOURCE_DATE_EPOCH`
//! (reproducible builds) wins over the build machine's clock. The value is only rewritten when
//! this file or that variable changes: a lower bound of the build's date, never later than it.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let secs = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    });
    println!("cargo:rustc-env=KIOSK_AGENT_BUILT_AT={secs}");
}
