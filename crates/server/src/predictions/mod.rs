//! Weber predictions: purchases in ([`transactions`]), customer lifetime value and churn out.
//!
//! Purchases arrive through `POST /api/v1/transactions` and are stored per tenant. The
//! `weber.refit_predictions` job fits the lifetime models on them (with the tenant's Weber
//! profiles as extra churn features) and stores every customer's predictions, which the CLV,
//! churn and recommendation endpoints serve with the model version that made them.

pub mod transactions;
