//! Unit tests of the Zoho simulator (placeholder replaced below).
