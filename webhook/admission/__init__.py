"""Layer 5: the kinds wired to the core (`kinds`), AdmissionReview on the wire (`review`, `response`), which
requests are decided (`admit`), and the audit of stored objects (`audit`). Pure: the shells above do the I/O."""
