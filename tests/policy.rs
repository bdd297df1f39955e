//! Property tests of the generator: for every valid policy, every password validates and uses
//! exactly the allowed characters; no policy input makes the generator panic.

use proptest::prelude::*;
use pwrotd::password::{self, Class, Policy, SPECIALS};

/// The characters a policy allows, computed from its inputs independently of `Policy`.
fn allowed(require: &[Class], special: &str, exclude: &str) -> Vec<char> {
    (' '..='~')
        .filter(|c| match Class::of(*c) {
            Some(Class::Special) => require.contains(&Class::Special) && special.contains(*c),
            Some(class) => require.contains(&class),
            None => false,
        })
        .filter(|c| !exclude.contains(*c))
        .collect()
}

fn classes() -> impl Strategy<Value = Vec<Class>> {
    proptest::sample::subsequence(Class::ALL.to_vec(), 3..=4)
}

fn subset_of(chars: &'static str) -> impl Strategy<Value = String> {
    proptest::sample::subsequence(chars.chars().collect::<Vec<_>>(), 0..=chars.len())
        .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn valid_policies_generate_valid_passwords(
        length in password::MIN_LENGTH..=password::MAX_LENGTH,
        require in classes(),
        special in subset_of(SPECIALS).prop_filter("a required class needs a character", |s| !s.is_empty()),
        exclude in subset_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*()_+-="),
    ) {
        let expect = allowed(&require, &special, &exclude);
        let every_class_possible = require.iter().all(|class| expect.iter().any(|c| Class::of(*c) == Some(*class)));
        let policy = Policy::new(length, &require, &special, &exclude);
        prop_assert_eq!(policy.is_ok(), every_class_possible, "{:?}", policy);
        let Ok(policy) = policy else { return Ok(()) };
        for _ in 0..8 {
            let generated = policy.generate().expect("generation succeeds");
            let p = generated.expose();
            prop_assert!(password::validate(p).is_ok());
            prop_assert_eq!(p.chars().count(), length);
            prop_assert!(p.chars().all(|c| expect.contains(&c)), "a character outside the policy");
            for class in &require {
                prop_assert!(p.chars().any(|c| Class::of(c) == Some(*class)), "missing {:?}", class);
            }
        }
    }

    #[test]
    fn any_policy_input_is_a_value_or_named_errors(
        length in 0usize..64,
        require in proptest::collection::vec(prop_oneof![Just(Class::Upper), Just(Class::Lower), Just(Class::Digit), Just(Class::Special)], 0..6),
        special in "[ -~]{0,8}",
        exclude in "[ -~]{0,80}",
    ) {
        match Policy::new(length, &require, &special, &exclude) {
            Ok(policy) => prop_assert!(password::validate(policy.generate().expect("generates").expose()).is_ok()),
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(["length", "require", "special", "exclude"].contains(&e.key));
                }
            }
        }
    }

    #[test]
    fn canonical_query_round_trips(params in proptest::collection::btree_map("[A-Za-z]{1,12}", any::<String>(), 0..8)) {
        let encoded = pwrotd::cloud::sign::canonical_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%&=".contains(&b)));
        let decoded: std::collections::BTreeMap<String, String> =
            form_urlencoded::parse(encoded.as_bytes()).into_owned().collect();
        prop_assert_eq!(decoded, params);
    }
}
