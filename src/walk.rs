//! Checks on what a test worker recorded: every id of a stream, in order,
//! where a restarted process may step back to its checkpoint.

use std::collections::HashMap;

/// A step back in a record list: a process started over from an older checkpoint.
#[derive(Debug)]
pub struct Rewind {
    /// Position in the record list of the first id handled again.
    pub at: usize,
    /// How many messages were handled again (the step back).
    pub again: usize,
}

/// How a record list walks the published stream.
#[derive(Debug)]
pub struct Walk {
    /// Index in the expected ids of the first and of the highest id recorded.
    pub first: usize,
    /// See `first`.
    pub highest: usize,
    /// Where the list stepped back.
    pub rewinds: Vec<Rewind>,
}

/// Checks that `records` go through `expected` (every id published on the
/// pattern, ascending) one id after the next, without skipping any and without
/// any id from elsewhere; the only other step allowed is back, to an id already
/// handled, where a process started over from its checkpoint. So a list that
/// passes handled everything between `first` and `highest`, in order of first
/// occurrence.
pub fn walk(expected: &[u64], records: &[u64]) -> Walk {
    try_walk(expected, records).unwrap_or_else(|error| panic!("{error}"))
}

/// As [`walk`], returning what is wrong instead of panicking.
pub fn try_walk(expected: &[u64], records: &[u64]) -> Result<Walk, String> {
    if records.is_empty() {
        return Err("nothing was recorded".to_owned());
    }
    let index: HashMap<u64, usize> = expected.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let position = |at: usize| {
        let id = records[at];
        index
            .get(&id)
            .copied()
            .ok_or_else(|| format!("record #{at} is id {id}, which was not published on the pattern"))
    };
    let first = position(0)?;
    let (mut previous, mut highest, mut rewinds) = (first, first, Vec::new());
    for at in 1..records.len() {
        let i = position(at)?;
        if i <= previous {
            rewinds.push(Rewind { at, again: previous - i + 1 });
        } else if i > previous + 1 {
            let (id, before, skipped) = (records[at], records[at - 1], expected[previous + 1]);
            return Err(format!("record #{at} is id {id} right after id {before}: id {skipped} was skipped"));
        }
        previous = i;
        highest = highest.max(i);
    }
    Ok(Walk { first, highest, rewinds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_accepts_restarts_and_rejects_gaps_and_strangers() {
        let expected = [2, 3, 5, 8, 13];
        let ok = walk(&expected, &[2, 3, 5, 3, 5, 8, 13]);
        assert_eq!((ok.first, ok.highest), (0, 4));
        assert_eq!((ok.rewinds.len(), ok.rewinds[0].at, ok.rewinds[0].again), (1, 3, 2));
        for bad in [&[2, 3, 8][..], &[2, 4], &[2, 3, 5, 3, 8], &[]] {
            assert!(try_walk(&expected, bad).is_err(), "{bad:?} passed");
        }
    }
}
