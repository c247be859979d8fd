//! Unit tests of the joins: increments of several runs, observed resets, Redis's checks on
//! increments, and hash fields under resets.
use std::collections::BTreeMap;

use super::*;

fn v(ts: u64) -> Version {
    Version {
        ts: Timestamp(ts),
        node: NodeId(1),
    }
}

fn int(c: &Cell) -> i64 {
    match c.number().unwrap() {
        Num::Int(i) => i,
        n => panic!("{n:?}"),
    }
}

#[test]
fn increments_of_two_runs_add_up_in_any_order_and_twice() {
    let mut a = Cell::written(ORIGIN, None);
    let mut b = Cell::written(ORIGIN, None);
    for i in 0..10 {
        a.increment(1, Num::Int(1), v(100), i).unwrap();
        b.increment(2, Num::Int(2), v(100), i).unwrap();
    }
    let (a0, b0) = (a.clone(), b.clone());
    a.join(&b0.register, &b0.parts, 50, 1);
    a.join(&b0.register, &b0.parts, 51, 1);
    b.join(&a0.register, &a0.parts, 50, 1);
    assert_eq!(int(&a), 30);
    assert_eq!(int(&b), 30);
    assert_eq!(a.read().unwrap(), "30");
}

#[test]
fn a_write_resets_what_it_saw_and_keeps_what_it_did_not() {
    let mut a = Cell::written(ORIGIN, None);
    for i in 0..500 {
        a.increment(1, Num::Int(1), v(100), i).unwrap();
    }
    let mut b = a.clone();
    a.write(v(10), Some("42".into()));
    for i in 0..300 {
        b.increment(2, Num::Int(1), v(100), i).unwrap();
    }
    let (a0, b0) = (a.clone(), b.clone());
    a.join(&b0.register, &b0.parts, 1, 1);
    b.join(&a0.register, &a0.parts, 1, 1);
    assert_eq!((int(&a), int(&b)), (342, 342));
    let mut gone = a.clone();
    gone.write(v(11), None);
    assert!(
        !gone.exists(),
        "a delete that saw everything leaves nothing"
    );
    gone.increment(3, Num::Int(5), v(100), 1).unwrap();
    assert_eq!(gone.read().unwrap(), "5");
}

#[test]
fn increments_are_checked_like_redis() {
    let mut c = Cell::written(v(1), Some(Bytes::from(i64::MAX.to_string())));
    assert_eq!(
        c.increment(1, Num::Int(1), v(100), 1),
        Err(NotCounted::Overflow)
    );
    assert!(c.parts.is_empty(), "a refused increment changes nothing");
    let mut s = Cell::written(v(1), Some("abc".into()));
    assert_eq!(
        s.increment(1, Num::Int(1), v(100), 1),
        Err(NotCounted::NotANumber)
    );
    let mut f = Cell::written(v(1), Some("10.5".into()));
    assert_eq!(
        f.increment(1, Num::Int(1), v(100), 1),
        Err(NotCounted::NotANumber)
    );
    assert_eq!(
        f.increment(1, Num::Float(0.1), v(100), 1),
        Ok(Num::Float(10.6))
    );
    assert_eq!(f.read().unwrap(), "10.6");
    assert_eq!(f.increment(1, Num::Float(0.4), v(100), 2), Ok(Num::Int(11)));
    assert_eq!(f.increment(1, Num::Int(1), v(100), 3), Ok(Num::Int(12)));
    assert_eq!(
        f.increment(1, Num::Float(f64::MAX), v(100), 4)
            .and_then(|_| f.increment(1, Num::Float(f64::MAX), v(100), 5)),
        Err(NotCounted::NotFinite)
    );
    assert_eq!(parse_int(b"007"), None);
    assert_eq!(parse_int(b"+1"), None);
    assert_eq!(parse_int(b"-0"), None);
    assert_eq!(parse_int(b"0"), Some(0));
    assert_eq!(parse_int(b"-12"), Some(-12));
    assert_eq!(format_float(0.1 + 0.2), "0.3");
    assert_eq!(format_float(1e20), "100000000000000000000");
    assert_eq!(format_float(-1.5), "-1.5");
}

#[test]
fn hash_fields_join_one_by_one_and_a_reset_hides_older_ones() {
    let mut a = Hash {
        reset: ORIGIN,
        fields: BTreeMap::new(),
        size: 0,
        top: ORIGIN,
        head: Header {
            ttl: ORIGIN,
            reg_seq: 0,
            reg_source: 0,
            ttl_seq: 0,
            ttl_source: 0,
            ttl_at: u64::MAX,
        },
    };
    let mut b = a.clone();
    a.set("x".into(), Some("1".into()), v(5), 1);
    b.set("y".into(), Some("2".into()), v(6), 1);
    b.set("x".into(), None, v(4), 2); // an older delete of x loses to the newer write
    let wire = |h: &Hash| {
        h.fields
            .iter()
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect::<Vec<_>>()
    };
    let (fa, fb) = (wire(&a), wire(&b));
    a.join(b.reset, &fb, 3, 1);
    b.join(a.reset, &fa, 3, 1);
    let read = |h: &Hash| h.visible().map(|(k, v)| (k.clone(), v)).collect::<Vec<_>>();
    assert_eq!(read(&a), read(&b));
    assert_eq!(read(&a).len(), 2);
    a.join(v(5), &[], 4, 1);
    assert_eq!(read(&a), vec![(Bytes::from("y"), Bytes::from("2"))]);
    a.increment("n".into(), Num::Int(3), 9, v(7), 5).unwrap();
    assert_eq!(a.fields[&b"n"[..]].read().unwrap(), "3");
}
