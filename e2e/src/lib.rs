//! End-to-end tests of the OPD platform live in `tests/`; the platform they start is
//! `opd_testing::Platform`.
