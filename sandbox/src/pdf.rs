//! Small, valid one-page PDFs: the sandbox's service contract, its "signed" documents, and the
//! demo's sample document. Offsets in the cross-reference table are computed, so readers accept
//! the files without repairing them.

/// A one-page PDF showing `lines` of text (ASCII; other characters become `?`).
pub fn text_pdf(lines: &[&str]) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 72 760 Td 16 TL\n");
    for line in lines {
        let clean: String = line
            .chars()
            .map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' })
            .flat_map(|c| if matches!(c, '(' | ')' | '\\') { vec!['\\', c] } else { vec![c] })
            .collect();
        content.push_str(&format!("({clean}) Tj T*\n"));
    }
    content.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{content}endstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    out
}

/// "Signs" `original`: the same document with an incremental update carrying a signature note,
/// so the result differs from the original and is still a PDF.
pub fn signed(original: &[u8], note: &str) -> Vec<u8> {
    let mut out = original.to_vec();
    out.extend_from_slice(format!("% kiosk-sandbox signature: {note}\n%%EOF\n").as_bytes());
    out
}

/// Whether `bytes` start like a PDF.
pub fn is_pdf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"%PDF-")
}

/// How many pages a PDF has: its page objects (`/Type /Page`, not `/Pages`), at least one.
/// Enough for the documents a kiosk uploads; a reader of every PDF it is not.
pub fn page_count(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    let pages = text.match_indices("/Type").filter(|(i, _)| {
        let rest = text[i + 5..].trim_start();
        rest.starts_with("/Page") && !rest.starts_with("/Pages")
    });
    pages.count().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_pdf_has_a_consistent_xref() {
        let pdf = text_pdf(&["Service contract", "(parentheses) and \\ back\\slash"]);
        assert!(is_pdf(&pdf) && pdf.ends_with(b"%%EOF\n"));
        let text = String::from_utf8_lossy(&pdf);
        let startxref: usize = text.rsplit("startxref\n").next().unwrap().lines().next().unwrap().parse().unwrap();
        assert!(pdf[startxref..].starts_with(b"xref"), "startxref points at the table");
        let signed = signed(&pdf, "request 1");
        assert!(is_pdf(&signed) && signed != pdf && signed.starts_with(&pdf));
    }
}
