//! The one list of top-up and payment methods known to the platform.

/// Every accepted method, lowercase, as clients send it.
pub const METHODS: &[&str] = &[
    "alfamart",
    "indomart",
    "lawson",
    "dana",
    "ovo",
    "gopay",
    "linkaja",
    "jenius",
    "fastpay",
    "kudo",
    "bri",
    "mandiri",
    "bca",
    "bni",
    "bukopin",
    "e-banking",
    "visa",
    "mastercard",
    "discover",
    "american express",
    "paypal",
];

/// The canonical spelling of a method, if known.
pub fn canonical(method: &str) -> Option<&'static str> {
    let m = method.trim().to_lowercase();
    METHODS.iter().copied().find(|k| *k == m)
}

/// Validator hook: the method must be in [`METHODS`].
///
/// # Errors
/// A `ValidationError` listing the accepted methods.
pub fn validate(method: &str) -> Result<(), validator::ValidationError> {
    if canonical(method).is_some() {
        return Ok(());
    }
    Err(validator::ValidationError::new("unknown_method")
        .with_message(format!("method must be one of: {}", METHODS.join(", ")).into()))
}
