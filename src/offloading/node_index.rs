//! The names and labels of a set of virtual nodes, indexed once so that a clusterSelector is judged
//! against all of them by set operations: label key -> value -> the nodes with it, and the nodes
//! having each key. A review then costs about the same with 1 or 1 000 virtual nodes (a set is a
//! bit per node, so an operation on it is one word per 64 nodes).
//!
//! The answers are exactly those of [`selector::matches`] and [`selector::matches_lazily`] node by
//! node: In, NotIn, Exists and DoesNotExist are unions and complements of the index's sets; Gt, Lt
//! and any other operator apply the plain rule once per distinct value of the key.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

use super::selector::{self, NODE_NAME_FIELD, NodeFacts, is_empty_term, requirement_holds};

/// A set of nodes, by their position in the indexed list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeBits {
    words: Vec<u64>,
    /// How many nodes there are (the bits past it stay zero).
    nodes: usize,
}

impl NodeBits {
    /// No node of `nodes`.
    pub fn none(nodes: usize) -> Self {
        Self { words: vec![0; nodes.div_ceil(64)], nodes }
    }

    /// Every node of `nodes`.
    pub fn all(nodes: usize) -> Self {
        Self::none(nodes).complement()
    }

    /// The nodes not in the set.
    pub fn complement(mut self) -> Self {
        for w in &mut self.words {
            *w = !*w;
        }
        let tail = self.nodes % 64;
        if tail != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << tail) - 1;
        }
        self
    }

    pub fn contains(&self, i: usize) -> bool {
        self.words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// How many nodes are in the set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The positions in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            std::iter::successors((w != 0).then_some(w), |&w| {
                let rest = w & (w - 1);
                (rest != 0).then_some(rest)
            })
            .map(move |w| i * 64 + w.trailing_zeros() as usize)
        })
    }

    fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn intersect(&mut self, other: &Self) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w &= o;
        }
    }

    fn unite(&mut self, other: &Self) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    fn is_full(&self) -> bool {
        self.count() == self.nodes
    }
}

/// The nodes with one key or one value: a short list when they are few (a cluster id, a node
/// name), a bit set when they are many (a region), so that the index stays linear in the labels and
/// adding one to a set costs at most a word per 64 nodes either way.
#[derive(Debug, Clone)]
enum Members {
    Few(Vec<usize>),
    Many(NodeBits),
}

impl Default for Members {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl Members {
    fn new(positions: Vec<usize>, nodes: usize) -> Self {
        if positions.len() * 64 <= nodes {
            return Self::Few(positions);
        }
        let mut bits = NodeBits::none(nodes);
        for i in positions {
            bits.insert(i);
        }
        Self::Many(bits)
    }

    fn add_to(&self, set: &mut NodeBits) {
        match self {
            Self::Few(positions) => positions.iter().for_each(|&i| set.insert(i)),
            Self::Many(bits) => set.unite(bits),
        }
    }
}

/// Who has one key, and who has each of its values.
#[derive(Debug, Clone, Default)]
struct KeyIndex {
    with_key: Members,
    by_value: HashMap<String, Members>,
}

/// One key while the index is built: the positions with it, and with each value.
type Positions<'a> = (Vec<usize>, HashMap<&'a str, Vec<usize>>);

impl KeyIndex {
    fn new((with_key, by_value): Positions<'_>, nodes: usize) -> Self {
        Self {
            with_key: Members::new(with_key, nodes),
            by_value: by_value.into_iter().map(|(v, p)| (v.to_owned(), Members::new(p, nodes))).collect(),
        }
    }
}

/// The index of a list of nodes (see the module's documentation).
#[derive(Debug, Clone, Default)]
pub struct NodeIndex {
    nodes: usize,
    labels: HashMap<String, KeyIndex>,
    /// `metadata.name`, the one field a node offers to matchFields; every node has it.
    names: KeyIndex,
}

impl NodeIndex {
    /// Indexes the nodes; positions in the answers are positions in `nodes`.
    pub fn new<'a>(nodes: impl IntoIterator<Item = NodeFacts<'a>>) -> Self {
        let mut count = 0;
        let mut names: Positions<'a> = Default::default();
        let mut labels: HashMap<&'a str, Positions<'a>> = HashMap::new();
        for (i, node) in nodes.into_iter().enumerate() {
            count = i + 1;
            names.0.push(i);
            names.1.entry(node.name).or_default().push(i);
            for (k, v) in node.labels {
                let key = labels.entry(k.as_str()).or_default();
                key.0.push(i);
                key.1.entry(v.as_str()).or_default().push(i);
            }
        }
        Self {
            nodes: count,
            labels: labels.into_iter().map(|(k, p)| (k.to_owned(), KeyIndex::new(p, count))).collect(),
            names: KeyIndex::new(names, count),
        }
    }

    /// The nodes the (valid) selector selects: what [`selector::matches`] says of each node.
    pub fn matching(&self, selector: Option<&NodeSelector>) -> NodeBits {
        self.select(selector, |t| !is_empty_term(t))
    }

    /// The nodes Liqo v1.x selects: what [`selector::matches_lazily`] says of each node.
    pub fn matching_lazily(&self, selector: Option<&NodeSelector>) -> NodeBits {
        self.select(selector, |t| !is_empty_term(t) && selector::term_parses(t))
    }

    /// The union of the terms that count; no selector, or no terms, selects every node.
    fn select(
        &self,
        selector: Option<&NodeSelector>,
        counts: impl Fn(&NodeSelectorTerm) -> bool,
    ) -> NodeBits {
        let terms = selector.map(|s| s.node_selector_terms.as_slice()).unwrap_or_default();
        if terms.is_empty() {
            return NodeBits::all(self.nodes);
        }
        let mut selected = NodeBits::none(self.nodes);
        for term in terms.iter().filter(|t| counts(t)) {
            if selected.is_full() {
                break;
            }
            selected.unite(&self.term(term));
        }
        selected
    }

    /// The nodes every requirement of a non-empty term holds for.
    fn term(&self, term: &NodeSelectorTerm) -> NodeBits {
        let absent = KeyIndex::default();
        let mut holds = NodeBits::all(self.nodes);
        for req in term.match_expressions.iter().flatten() {
            if holds.is_empty() {
                return holds;
            }
            holds.intersect(&self.holding(req, self.labels.get(req.key.as_str()).unwrap_or(&absent)));
        }
        for req in term.match_fields.iter().flatten() {
            if holds.is_empty() {
                return holds;
            }
            // A node has one field; any other key reads as "", the same for every node.
            let field = if req.key == NODE_NAME_FIELD {
                self.holding(req, &self.names)
            } else if requirement_holds(req, Some("")) {
                NodeBits::all(self.nodes)
            } else {
                NodeBits::none(self.nodes)
            };
            holds.intersect(&field);
        }
        holds
    }

    /// The nodes the requirement holds for, `key` indexing the value it reads.
    fn holding(&self, req: &NodeSelectorRequirement, key: &KeyIndex) -> NodeBits {
        let values = req.values.as_deref().unwrap_or_default();
        let mut set = NodeBits::none(self.nodes);
        let add_listed = |set: &mut NodeBits| {
            for v in values {
                if let Some(m) = key.by_value.get(v.as_str()) {
                    m.add_to(set);
                }
            }
        };
        match req.operator.as_str() {
            "In" => add_listed(&mut set),
            "NotIn" => {
                add_listed(&mut set);
                set = set.complement();
            }
            "Exists" => key.with_key.add_to(&mut set),
            "DoesNotExist" => {
                key.with_key.add_to(&mut set);
                set = set.complement();
            }
            // Gt, Lt and unknown operators: the plain rule, once per distinct value.
            _ => {
                for (v, m) in &key.by_value {
                    if requirement_holds(req, Some(v)) {
                        m.add_to(&mut set);
                    }
                }
                if requirement_holds(req, None) {
                    let mut with_key = NodeBits::none(self.nodes);
                    key.with_key.add_to(&mut with_key);
                    set.unite(&with_key.complement());
                }
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::offloading::selector::{matches, matches_lazily};

    #[test]
    fn bits_keep_the_tail_clear() {
        for n in [0, 1, 63, 64, 65, 130] {
            let all = NodeBits::all(n);
            assert_eq!(all.count(), n);
            assert_eq!(all.iter().collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
            assert!(all.clone().complement().is_empty());
            assert!(NodeBits::none(n).is_empty());
            assert!(!all.contains(n));
        }
        let mut b = NodeBits::none(130);
        for i in [0, 63, 64, 129] {
            b.insert(i);
        }
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 63, 64, 129]);
        assert_eq!(b.clone().complement().count(), 126);
    }

    /// xorshift64*: deterministic, so a failure names a seed that reproduces it.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }

        fn one_in(&mut self, n: usize) -> bool {
            self.below(n) == 0
        }
    }

    const KEYS: &[&str] =
        &["region", "region", "cores", "cores", "id", "id", "zone", "gpu", "bad key", "x/y/z"];
    const REGIONS: &[&str] = &["eu", "us", "ap"];
    const CORES: &[&str] = &["1", "8", "16", "007", "many"];
    /// Odd values: signs, empty, not label values, not integers.
    const ODD: &[&str] = &["", "-3", "+5", "eu west", "true", "Not_A_Node"];
    const BOUNDS: &[&str] = &["0", "4", "8", "10", "16", "-3", "+5", "x"];
    const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Equals", "", "in"];
    const FIELD_KEYS: &[&str] =
        &["metadata.name", "metadata.name", "metadata.name", "metadata.labels", "spec.x"];

    fn node_labels(rng: &mut Rng, i: usize) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        // A value only this node has, as a cluster id: the short lists of the index.
        if !rng.one_in(4) {
            labels.insert("id".to_owned(), format!("n{i}"));
        }
        if !rng.one_in(5) {
            labels.insert("region".to_owned(), rng.pick(REGIONS).to_owned());
        }
        if rng.one_in(2) {
            labels.insert("cores".to_owned(), rng.pick(CORES).to_owned());
        }
        if rng.one_in(3) {
            let value = if rng.one_in(2) { rng.pick(ODD) } else { rng.pick(REGIONS) };
            labels.insert(rng.pick(KEYS).to_owned(), value.to_owned());
        }
        labels
    }

    /// A value a node may have under `key`, now and then an odd one.
    fn value(rng: &mut Rng, key: &str, names: &[String]) -> String {
        if rng.one_in(6) {
            return rng.pick(ODD).to_owned();
        }
        match key {
            NODE_NAME_FIELD if !names.is_empty() => names[rng.below(names.len())].clone(),
            "cores" => rng.pick(CORES).to_owned(),
            "id" => format!("n{}", rng.below(names.len() + 3)),
            _ => rng.pick(REGIONS).to_owned(),
        }
    }

    /// Mostly well formed (an operator with the values it takes), sometimes anything.
    fn requirement(rng: &mut Rng, key: &str, names: &[String]) -> NodeSelectorRequirement {
        let (operator, count) = if rng.one_in(5) {
            (rng.pick(OPERATORS), rng.below(4))
        } else {
            match rng.below(6) {
                0 => ("In", 1 + rng.below(3)),
                1 => ("NotIn", 1 + rng.below(3)),
                2 => ("Exists", 0),
                3 => ("DoesNotExist", 0),
                4 => ("Gt", 1),
                _ => ("Lt", 1),
            }
        };
        let values = match count {
            0 if rng.one_in(2) => None,
            n => Some(
                (0..n)
                    .map(|_| match operator {
                        "Gt" | "Lt" => rng.pick(BOUNDS).to_owned(),
                        _ => value(rng, key, names),
                    })
                    .collect(),
            ),
        };
        NodeSelectorRequirement { key: key.to_owned(), operator: operator.to_owned(), values }
    }

    /// One or two requirements, now and then none (absent or an empty list).
    fn requirements(rng: &mut Rng, keys: &[&str], names: &[String]) -> Option<Vec<NodeSelectorRequirement>> {
        let count = match rng.below(10) {
            0 => return None,
            1 => 0,
            2..=4 => 2,
            _ => 1,
        };
        Some(
            (0..count)
                .map(|_| {
                    let key = rng.pick(keys);
                    requirement(rng, key, names)
                })
                .collect(),
        )
    }

    fn random_selector(rng: &mut Rng, names: &[String]) -> Option<NodeSelector> {
        if rng.one_in(20) {
            return None;
        }
        let count = if rng.one_in(10) { 0 } else { 1 + rng.below(3) };
        let terms = (0..count)
            .map(|_| {
                let fields = rng.one_in(4);
                NodeSelectorTerm {
                    match_expressions: if fields && rng.one_in(2) {
                        None
                    } else {
                        requirements(rng, KEYS, names)
                    },
                    match_fields: if fields { requirements(rng, FIELD_KEYS, names) } else { None },
                }
            })
            .collect();
        Some(NodeSelector { node_selector_terms: terms })
    }

    #[test]
    fn the_index_answers_as_the_plain_scan_does() {
        let mut rng = Rng(0x5EED_1DE5_0000_0001);
        let (mut checked, mut selectors, mut mixed) = (0, 0, [0, 0]);
        for round in 0..200 {
            // Past 64 nodes, values held by few nodes are kept as lists, the others as bit sets.
            let count = match round % 4 {
                0 => rng.below(5),
                1 => rng.below(70),
                _ => 60 + rng.below(200),
            };
            // Names repeat sometimes: VirtualNodes of different tenants may share one.
            let names: Vec<String> =
                (0..count).map(|i| format!("vk-{}", i - i % (1 + rng.below(2)))).collect();
            let labels: Vec<BTreeMap<String, String>> =
                (0..count).map(|i| node_labels(&mut rng, i)).collect();
            let facts: Vec<NodeFacts<'_>> =
                names.iter().zip(&labels).map(|(name, labels)| NodeFacts { name, labels }).collect();
            let index = NodeIndex::new(facts.iter().cloned());
            for _ in 0..10 {
                let sel = random_selector(&mut rng, &names);
                let eager = index.matching(sel.as_ref());
                let lazy = index.matching_lazily(sel.as_ref());
                for (i, node) in facts.iter().enumerate() {
                    let case = || format!("round {round}, node {i} {node:?}, selector {sel:?}");
                    assert_eq!(eager.contains(i), matches(sel.as_ref(), node), "eager: {}", case());
                    assert_eq!(lazy.contains(i), matches_lazily(sel.as_ref(), node), "lazy: {}", case());
                    checked += 1;
                }
                assert!(eager.iter().all(|i| i < count) && lazy.iter().all(|i| i < count));
                selectors += 1;
                for (m, set) in mixed.iter_mut().zip([&eager, &lazy]) {
                    *m += usize::from(!set.is_empty() && set.count() < count);
                }
            }
        }
        // The draws are worth something: many selectors pick some nodes and leave others.
        assert!(checked > 100_000, "{checked}");
        assert!(mixed.iter().all(|&m| m * 5 > selectors), "{mixed:?} of {selectors}");
    }
}
