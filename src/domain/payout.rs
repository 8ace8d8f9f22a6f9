//! What the supplier earns for a sold lead. (STUB: helper fills in.)

use super::model::Payout;
use super::money::Money;

/// Revshare: percent of the price, rounded to cents; fixed: the amount.
pub fn supplier_payout(_payout: &Payout, _price: Money) -> Money {
    todo!()
}
