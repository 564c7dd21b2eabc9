//! An RFC 9111 HTTP cache as a tower `Layer`.
