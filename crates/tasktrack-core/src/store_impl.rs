//! [`store_impl!`](crate::store_impl): writes a backend's `impl Store` from lists of forwarders.
//!
//! Most backends implement a few [`Store`](crate::Store) operations natively and hand the rest to
//! the compare-and-swap adapter ([`crate::cas`]), to an inner store, or to their own module
//! functions. Written by hand, each forwarder is five lines that differ only in a name; the
//! macro turns each into one line, so a backend's `impl Store` reads as the list of what it does
//! natively and where everything else goes.

/// Writes `#[async_trait] impl Store for $ty` from a `native` block and forward lists.
///
/// ```text
/// tasktrack_core::store_impl! {
///     MyStore;                                   // the type (`impl Store for MyStore`)
///     native { /* methods written as is */ }     // anything not forwarded
///     via <expr> { op(arg: Type, …) -> Ret; … }  // (<expr>).op(arg, …).await
///     through_cas <expr> { … }                   // tasktrack_core::cas::op(<expr>, arg, …).await
///     through <module> with <expr> { … }         // <module>::op(<expr>, arg, …).await
///     through_cas <expr> around <wrap> { … }     // <wrap>(cas::op(<expr>, arg, …)).await
/// }
/// ```
///
/// - Sections come in any order, each as many times as needed; every section is optional but
///   together they must name every required `Store` method. `backend` is not async, so it is
///   always in `native`. `init`, `succeed_many` and `succeed_and_claim_next` have defaults in
///   the trait: leaving them out *uses the default*, so a wrapper must list them (a test
///   wrapper that did not forward the hand-off tested the default, never the backend's own).
/// - An entry is the method's name, its arguments after `&self` (names and types, as in the
///   trait) and what it returns inside `Result`: `get(key: &TaskKey) -> Task;`. Add
///   `=> other_name` to call a function of another name: `jobs(state: Option<JobState>) ->
///   Vec<Job> => list_jobs;`.
/// - `<expr>` starts with `self` or `&self` (`self.docs`, `&self.docs`, `self.0`, `self`) and
///   has no top-level braces. (The generated methods take their `&self` from it: by macro
///   hygiene, a `self` written inside the macro is not the one the caller's tokens name.)
///   In `via`, the methods of [`Store`](crate::Store) and
///   [`cas::Documents`](crate::cas::Documents) resolve without importing those traits.
/// - `<module>` is a path (`tasks`, `crate::queries`) to `async fn`s taking `<expr>` first.
/// - `around <wrap>` (after any `<expr>`) hands each call's future to `<wrap>` before awaiting
///   it: `around self.changing` for a method `changing(&self, f: impl Future) -> …` that does
///   something after every write.
/// - The type is a plain type; a generic impl (like [`CasStore`](crate::cas::CasStore)'s) is
///   written by hand.
/// - The generated code names nothing from the call site but what the lists name (types in the
///   signatures, the modules of `through`); `async_trait` comes from this crate.
///
/// # Example
///
/// A store that counts the tasks it hands out: `claim_next` is native, everything else goes to
/// the wrapped store or straight to the adapter under it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tasktrack_core::Result<()> {
/// use serde_json::Value;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use tasktrack_core::*;
///
/// #[derive(Debug)]
/// struct Counting {
///     inner: MemoryStore,
///     handed_out: AtomicUsize,
/// }
///
/// tasktrack_core::store_impl! {
///     Counting;
///     native {
///         fn backend(&self) -> &'static str {
///             "counting"
///         }
///         async fn claim_next(
///             &self,
///             job: &JobName,
///             req: &ClaimNext,
///             now: Timestamp,
///         ) -> Result<Vec<Claimed>> {
///             let won = self.inner.claim_next(job, req, now).await?;
///             self.handed_out.fetch_add(won.len(), Ordering::Relaxed);
///             Ok(won)
///         }
///     }
///     via self.inner {
///         init() -> ();
///         create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
///         claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
///         heartbeat(lease: &Lease, lease_for: Duration, now: Timestamp) -> Lease;
///         patch_data(lease: &Lease, patch: &Value, now: Timestamp) -> Task;
///         succeed(lease: &Lease, output: Value, now: Timestamp) -> Task;
///         succeed_many(done: &[(Lease, Value)], now: Timestamp) -> Vec<Result<Task>>;
///         fail(lease: &Lease, req: &Fail, now: Timestamp) -> Task;
///         release(lease: &Lease, now: Timestamp) -> Task;
///     }
///     via self.inner.documents() {
///         jobs(state: Option<JobState>) -> Vec<Job> => list_jobs;
///     }
///     through_cas self.inner.documents() {
///         put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
///         get_job(job: &JobName) -> Job;
///         set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
///         delete_job(job: &JobName, now: Timestamp) -> Deleted;
///         ignore(key: &TaskKey, req: &Ignore, now: Timestamp) -> Task;
///         retry(key: &TaskKey, req: &Retry, now: Timestamp) -> Task;
///         report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
///         delete(key: &TaskKey, now: Timestamp) -> ();
///         purge(req: &Purge) -> u64;
///         get(key: &TaskKey) -> Task;
///         list(query: &TaskQuery) -> TaskPage;
///         counts(job: &JobName) -> Counts;
///     }
/// }
///
/// let store = Counting { inner: MemoryStore::in_memory(), handed_out: AtomicUsize::new(0) };
/// let job = JobName::new("convert")?;
/// let now = Timestamp::now();
/// store.create(&job, &[NewTask::new(TaskId::new("a.png")?)], CreateMode::SkipExisting, now).await?;
/// let won = store.claim_next(&job, &ClaimNext::new("w1", Duration::from_secs(60)), now).await?;
/// store.succeed(&won[0].lease, Value::Null, now).await?;
/// assert_eq!(store.handed_out.load(Ordering::Relaxed), 1);
/// assert_eq!(store.counts(&job).await?.by_status.succeeded, 1);
/// assert_eq!(store.jobs(None).await?.len(), 1);
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! store_impl {
    // ---- sections: `@go [type] [methods so far] sections…` ----
    (@go [$ty:ty] [$($out:tt)*]) => {
        #[$crate::async_trait::async_trait]
        impl $crate::Store for $ty {
            $($out)*
        }
    };
    (@go [$ty:ty] [$($out:tt)*] native { $($item:tt)* } $($rest:tt)*) => {
        $crate::store_impl! { @go [$ty] [$($out)* $($item)*] $($rest)* }
    };
    (@go [$ty:ty] [$($out:tt)*] via $($rest:tt)*) => {
        $crate::store_impl! { @expr [$ty] [$($out)*] [via] [] $($rest)* }
    };
    (@go [$ty:ty] [$($out:tt)*] through_cas $($rest:tt)*) => {
        $crate::store_impl! { @expr [$ty] [$($out)*] [through $crate::cas] [] $($rest)* }
    };
    (@go [$ty:ty] [$($out:tt)*] through $($m:ident)::+ with $($rest:tt)*) => {
        $crate::store_impl! { @expr [$ty] [$($out)*] [through $($m)::+] [] $($rest)* }
    };
    (@go [$ty:ty] [$($out:tt)*] $($rest:tt)*) => {
        ::core::compile_error!(
            "store_impl!: expected `native { … }`, `via <expr> { … }`, \
             `through_cas <expr> { … }` or `through <module> with <expr> { … }`"
        );
    };

    // ---- the target expression (and wrapper): every token up to the list's braces ----
    (@expr [$ty:ty] [$($out:tt)*] $kind:tt [$($e:tt)*] { $($list:tt)* } $($rest:tt)*) => {
        $crate::store_impl! { @split [$ty] [$($out)*] $kind [$($e)*] [] [$($list)*] $($rest)* }
    };
    (@expr [$ty:ty] [$($out:tt)*] $kind:tt [$($e:tt)*] around $($rest:tt)*) => {
        $crate::store_impl! { @around [$ty] [$($out)*] $kind [$($e)*] [] $($rest)* }
    };
    (@expr [$ty:ty] [$($out:tt)*] $kind:tt [$($e:tt)*] $t:tt $($rest:tt)*) => {
        $crate::store_impl! { @expr [$ty] [$($out)*] $kind [$($e)* $t] $($rest)* }
    };
    (@around [$ty:ty] [$($out:tt)*] $kind:tt [$($e:tt)*] [$($w:tt)*] { $($list:tt)* } $($rest:tt)*) => {
        $crate::store_impl! { @split [$ty] [$($out)*] $kind [$($e)*] [$($w)*] [$($list)*] $($rest)* }
    };
    (@around [$ty:ty] [$($out:tt)*] $kind:tt [$($e:tt)*] [$($w:tt)*] $t:tt $($rest:tt)*) => {
        $crate::store_impl! { @around [$ty] [$($out)*] $kind [$($e)*] [$($w)* $t] $($rest)* }
    };
    // The receiver of each generated method is the expression's own `self` token (a `self`
    // written by this macro would not be the caller's).
    (@split [$ty:ty] [$($out:tt)*] $kind:tt [& $s:ident $($e:tt)*] $w:tt $list:tt $($rest:tt)*) => {
        $crate::store_impl! { @self $s }
        $crate::store_impl! { @list [$ty] [$($out)*] $kind [$s] [& $s $($e)*] $w $list $($rest)* }
    };
    (@split [$ty:ty] [$($out:tt)*] $kind:tt [$s:ident $($e:tt)*] $w:tt $list:tt $($rest:tt)*) => {
        $crate::store_impl! { @self $s }
        $crate::store_impl! { @list [$ty] [$($out)*] $kind [$s] [$s $($e)*] $w $list $($rest)* }
    };
    (@split $($bad:tt)*) => {
        ::core::compile_error!("store_impl!: a forward list's expression starts with `self` or `&self`");
    };
    (@self self) => {};
    (@self $other:tt) => {
        ::core::compile_error!("store_impl!: a forward list's expression starts with `self` or `&self`");
    };

    // ---- one forwarder per list entry: `=> target` names the function called ----
    (@list [$ty:ty] [$($out:tt)*] $kind:tt [$s:ident] $e:tt $w:tt [] $($rest:tt)*) => {
        $crate::store_impl! { @go [$ty] [$($out)*] $($rest)* }
    };
    (@list [$ty:ty] [$($out:tt)*] $kind:tt [$s:ident] $e:tt $w:tt
        [$name:ident($($arg:ident: $aty:ty),* $(,)?) -> $ret:ty; $($more:tt)*]
        $($rest:tt)*
    ) => {
        $crate::store_impl! {
            @list [$ty] [$($out)*] $kind [$s] $e $w
            [$name($($arg: $aty),*) -> $ret => $name; $($more)*]
            $($rest)*
        }
    };
    (@list [$ty:ty] [$($out:tt)*] [via] [$s:ident] [$($e:tt)*] [$($w:tt)*]
        [$name:ident($($arg:ident: $aty:ty),* $(,)?) -> $ret:ty => $f:ident; $($more:tt)*]
        $($rest:tt)*
    ) => {
        $crate::store_impl! {
            @list [$ty] [
                $($out)*
                async fn $name(&$s, $($arg: $aty),*) -> $crate::Result<$ret> {
                    #[allow(unused_imports)]
                    use $crate::{Store as _, cas::Documents as _};
                    $($w)*(($($e)*).$f($($arg),*)).await
                }
            ] [via] [$s] [$($e)*] [$($w)*] [$($more)*] $($rest)*
        }
    };
    (@list [$ty:ty] [$($out:tt)*] [through $($m:tt)*] [$s:ident] [$($e:tt)*] [$($w:tt)*]
        [$name:ident($($arg:ident: $aty:ty),* $(,)?) -> $ret:ty => $f:ident; $($more:tt)*]
        $($rest:tt)*
    ) => {
        $crate::store_impl! {
            @list [$ty] [
                $($out)*
                async fn $name(&$s, $($arg: $aty),*) -> $crate::Result<$ret> {
                    $($w)*($($m)*::$f($($e)*, $($arg),*)).await
                }
            ] [through $($m)*] [$s] [$($e)*] [$($w)*] [$($more)*] $($rest)*
        }
    };
    (@list [$ty:ty] [$($out:tt)*] $kind:tt [$s:ident] $e:tt $w:tt [$($bad:tt)*] $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "store_impl!: expected `op(arg: Type, …) -> Ret;` or `op(…) -> Ret => target;`, found `",
            ::core::stringify!($($bad)*),
            "`"
        ));
    };

    // ---- entry ----
    ($ty:ty; $($sections:tt)*) => {
        $crate::store_impl! { @go [$ty] [] $($sections)* }
    };
}

#[cfg(test)]
mod tests {
    use crate::*;
    use serde_json::Value;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// `through <module> with`, `around`, and a `via` expression that starts with `&self`.
    #[derive(Debug)]
    struct Wrapped(MemoryStore, AtomicUsize);

    impl Wrapped {
        async fn counted<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
            self.1.fetch_add(1, Ordering::Relaxed);
            call.await
        }
    }

    crate::store_impl! {
        Wrapped;
        native {
            fn backend(&self) -> &'static str {
                "wrapped"
            }
        }
        via &self.0 {
            jobs(state: Option<JobState>) -> Vec<Job>;
            claim_next(job: &JobName, req: &ClaimNext, now: Timestamp) -> Vec<Claimed>;
            succeed_many(done: &[(Lease, Value)], now: Timestamp) -> Vec<Result<Task>>;
        }
        through crate::cas with self.0.documents() {
            put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
            get_job(job: &JobName) -> Job;
            set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
            delete_job(job: &JobName, now: Timestamp) -> Deleted;
            heartbeat(lease: &Lease, lease_for: Duration, now: Timestamp) -> Lease;
            patch_data(lease: &Lease, patch: &Value, now: Timestamp) -> Task;
            succeed(lease: &Lease, output: Value, now: Timestamp) -> Task;
            fail(lease: &Lease, req: &Fail, now: Timestamp) -> Task;
            release(lease: &Lease, now: Timestamp) -> Task;
            ignore(key: &TaskKey, req: &Ignore, now: Timestamp) -> Task;
            retry(key: &TaskKey, req: &Retry, now: Timestamp) -> Task;
            report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
            delete(key: &TaskKey, now: Timestamp) -> ();
            purge(req: &Purge) -> u64;
            get(key: &TaskKey) -> Task;
            list(query: &TaskQuery) -> TaskPage;
            counts(job: &JobName) -> Counts;
        }
        through crate::cas with self.0.documents() around self.counted {
            create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
            claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
        }
    }

    #[tokio::test]
    async fn forwarders_reach_the_inner_store() {
        let store = Wrapped(MemoryStore::in_memory(), AtomicUsize::new(0));
        let job = JobName::new("j").unwrap();
        let key = TaskKey::new(job.clone(), TaskId::new("t").unwrap());
        let now = Timestamp::now();
        let new = [NewTask::new(key.id.clone())];
        store
            .create(&job, &new, CreateMode::SkipExisting, now)
            .await
            .unwrap();
        let got = store
            .claim(&key, &Claim::new("w", Duration::from_secs(60)), now)
            .await
            .unwrap();
        let done = store
            .succeed_many(&[(got.lease, Value::Null)], now)
            .await
            .unwrap();
        assert_eq!(done[0].as_ref().unwrap().status, Status::Succeeded);
        assert_eq!(store.0.get(&key).await.unwrap().status, Status::Succeeded);
        assert_eq!(store.backend(), "wrapped");
        assert_eq!(
            store.1.load(Ordering::Relaxed),
            2,
            "create and claim went around `counted`"
        );
    }
}
