//! Index files: [`FlatIndex`] and [`IvfPqIndex`] to and from the
//! [`format`](crate::format) container.
