//! A new user's first calls on a freshly created database, over and over, with the CPUs busy:
//! the start-up must never leave a connection with a half-migrated schema (which answered the
//! first idempotent CreateTask with INTERNAL on fresh SQLite files).

use crate::{
    binary::launch,
    client::{database_env, sign_up},
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use test_support::{channel, with_bearer};
use todo_api::{
    todo::task::v1::CreateTaskRequest, todo::task::v1::task_service_client::TaskServiceClient,
};
use tonic::Code;

/// Fresh starts in one run.
const STARTS: usize = 30;

/// Busy threads keeping every core loaded until dropped.
struct CpuLoad(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl CpuLoad {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self(stop, threads)
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for thread in self.1.drain(..) {
            thread.join().ok();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_calls_on_a_fresh_database_never_fail_even_with_busy_cpus() {
    let _load = CpuLoad::start();
    let mut waited_for_keys = 0;
    for start in 0..STARTS {
        let env = database_env().await;
        let launched = tokio::task::spawn_blocking(move || launch(&env))
            .await
            .unwrap();
        let token = sign_up(launched.auth_addr, &format!("first-{start}@example.com"))
            .await
            .unwrap_or_else(|status| panic!("start {start}: SignUp: {status:?}"));
        let mut tasks = TaskServiceClient::new(channel(launched.task_addr).await);
        let request = CreateTaskRequest {
            title: "first task".into(),
            request_id: "0193a0c4-5b7e-7c3a-9d2e-4f6a8b0c1d2e".into(),
            ..Default::default()
        };
        // The only acceptable refusal: UNAVAILABLE for the moment the task-service is still
        // fetching its verification keys (the documented, retryable start-up state).
        let mut created = None;
        for _ in 0..200 {
            match tasks
                .create_task(with_bearer(request.clone(), &token))
                .await
            {
                Ok(task) => {
                    created = Some(task.into_inner());
                    break;
                }
                Err(status) if status.code() == Code::Unavailable => {
                    waited_for_keys += 1;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(status) => panic!("start {start}: CreateTask: {status:?}"),
            }
        }
        let created = created.unwrap_or_else(|| panic!("start {start}: never became ready"));
        // The retry of the same request is the same task.
        let again = tasks
            .create_task(with_bearer(request, &token))
            .await
            .unwrap_or_else(|status| panic!("start {start}: retried CreateTask: {status:?}"))
            .into_inner();
        assert_eq!(again.id, created.id, "start {start}");
        tokio::task::spawn_blocking(move || launched.interrupt_and_wait())
            .await
            .unwrap();
    }
    println!(
        "{STARTS} fresh starts, {waited_for_keys} UNAVAILABLE answers while keys were fetched"
    );
}
