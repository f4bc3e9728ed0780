//! Looks at the S3-compatible server directly, for what object_store cannot list:
//! incomplete multipart uploads (`GET /bucket?uploads`), signed with
//! `curl --aws-sigv4` from the AWS_* variables, as `scripts/lib.sh` makes the bucket.

use std::process::Command;

/// The keys of the incomplete multipart uploads under `prefix` in `bucket`.
pub fn incomplete_uploads(bucket: &str, prefix: &str) -> Vec<String> {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let endpoint = var("AWS_ENDPOINT");
    // The whole bucket's list, filtered here: MinIO takes `prefix` only as an exact
    // object name. curl (7.88) signs the query as written, so it is written in SigV4's
    // canonical form (`uploads=`, not `uploads`).
    let url = format!("{}/{bucket}?uploads=", endpoint.trim_end_matches('/'));
    let output = Command::new("curl")
        .args(["-fsS", "--max-time", "10", "--aws-sigv4"])
        .arg(format!("aws:amz:{}:s3", var("AWS_REGION")))
        .arg("--user")
        .arg(format!(
            "{}:{}",
            var("AWS_ACCESS_KEY_ID"),
            var("AWS_SECRET_ACCESS_KEY")
        ))
        .arg(&url)
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "listing multipart uploads failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let xml = String::from_utf8_lossy(&output.stdout);
    xml.split("<Upload>")
        .skip(1)
        .filter_map(|upload| {
            let start = upload.find("<Key>")? + "<Key>".len();
            let end = upload[start..].find("</Key>")? + start;
            Some(upload[start..end].to_owned())
        })
        .filter(|key| key.starts_with(prefix))
        .collect()
}
