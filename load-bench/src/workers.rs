//! The calls the scenarios make. Each worker owns its client (a clone of one of the shared
//! connections) and, where it needs them, its own users, so workers never race each other.

use crate::{
    load::{Outcome, Worker},
    stack::BenchUser,
};
use todo_api::{
    todo::auth::v1::SignInRequest,
    todo::auth::v1::auth_service_client::AuthServiceClient,
    todo::task::v1::task_service_client::TaskServiceClient,
    todo::task::v1::{self as pb},
};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// One user and the ids of their tasks.
#[derive(Clone)]
pub struct UserTasks {
    pub user: BenchUser,
    pub ids: Vec<String>,
}

/// The connection worker `w` uses: `w` mod the number of connections.
pub fn channel(channels: &[Channel], w: usize) -> Channel {
    channels[w % channels.len()].clone()
}

/// A TaskService client on worker `w`'s connection.
pub fn task_client(channels: &[Channel], w: usize) -> TaskServiceClient<Channel> {
    TaskServiceClient::new(channel(channels, w))
}

/// `users` dealt out to `workers` workers: worker `w` gets users `w`, `w + workers`, ...
pub fn deal<T: Clone>(users: &[T], workers: usize, w: usize) -> Vec<T> {
    let mine: Vec<T> = users.iter().skip(w).step_by(workers).cloned().collect();
    if mine.is_empty() {
        // More workers than users: share.
        users
            .get(w % users.len().max(1))
            .cloned()
            .into_iter()
            .collect()
    } else {
        mine
    }
}

/// The workers' random choices: seeded, so a run's sequence of users and operations repeats.
pub type Rng = fastrand::Rng;

/// `message` carrying `user`'s bearer token.
pub fn authed<T>(message: T, user: &BenchUser) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", user.bearer.clone());
    request
}

/// grpc.health.v1 Check of the task service: the floor (no token, no database).
pub struct Health {
    pub client: HealthClient<Channel>,
}

impl Worker for Health {
    async fn call(&mut self) -> Outcome {
        let request = HealthCheckRequest {
            service: "todo.task.v1.TaskService".into(),
        };
        ("health", self.client.check(request).await.map(|_| ()))
    }
}

/// `n` health checkers.
pub fn health_checkers(channels: &[Channel], n: usize) -> impl Iterator<Item = Health> + '_ {
    (0..n).map(|w| Health {
        client: HealthClient::new(channel(channels, w)),
    })
}

/// GetTask of a trivial server (see `overhead`), carrying `user`'s token. An
/// `authenticated` server must have found the caller (its answer names the user).
pub struct GetTrivial {
    pub client: TaskServiceClient<Channel>,
    pub user: BenchUser,
    pub authenticated: bool,
}

impl Worker for GetTrivial {
    async fn call(&mut self) -> Outcome {
        let request = authed(
            pb::GetTaskRequest {
                id: "0193a0c4-5b7e-7c3a-9d2e-4f6a8b0c1d2e".into(),
            },
            &self.user,
        );
        let result = self.client.get_task(request).await.and_then(|task| {
            let named = task.get_ref().title == self.user.id.to_string();
            if named == self.authenticated {
                Ok(())
            } else {
                Err(Status::internal(
                    "the answer does not show the interceptor ran",
                ))
            }
        });
        ("get_trivial", result)
    }
}

/// GetTask with a valid token and a malformed id: the interceptor verifies the token, the
/// handler runs and refuses the id (INVALID_ARGUMENT is expected) before any database work.
pub struct GetAuthenticated {
    pub client: TaskServiceClient<Channel>,
    pub user: BenchUser,
}

impl Worker for GetAuthenticated {
    async fn call(&mut self) -> Outcome {
        let request = authed(
            pb::GetTaskRequest {
                id: "not-a-task-id".into(),
            },
            &self.user,
        );
        let result = match self.client.get_task(request).await {
            Err(status) if status.code() == Code::InvalidArgument => Ok(()),
            Ok(_) => Err(Status::unknown("expected InvalidArgument, got a success")),
            Err(status) => Err(status),
        };
        ("get_token", result)
    }
}

/// ListTasks, page_size 20, each call the next page of a random one of its users (walking
/// all their pages with page tokens, then starting over).
pub struct ListPages {
    pub client: TaskServiceClient<Channel>,
    pub page_size: i32,
    pub users: Vec<(BenchUser, String)>,
    pub rng: Rng,
}

impl Worker for ListPages {
    async fn call(&mut self) -> Outcome {
        let i = self.rng.usize(..self.users.len());
        let (user, page_token) = &mut self.users[i];
        let request = authed(
            pb::ListTasksRequest {
                page_size: self.page_size,
                page_token: std::mem::take(page_token),
                completed: None,
            },
            user,
        );
        let result = self.client.list_tasks(request).await.map(|r| {
            *page_token = r.into_inner().next_page_token;
        });
        ("list", result)
    }
}

/// The first page of a random one of its users, and after every ten lists a ToggleTask of a
/// random task of a random one of them (a write every user's cached pages must notice).
pub struct ListAndToggle {
    pub client: TaskServiceClient<Channel>,
    pub users: Vec<UserTasks>,
    pub page_size: i32,
    pub rng: Rng,
    pub calls: u64,
}

impl Worker for ListAndToggle {
    async fn call(&mut self) -> Outcome {
        self.calls += 1;
        let UserTasks { user, ids } = &self.users[self.rng.usize(..self.users.len())];
        if self.calls.is_multiple_of(11) && !ids.is_empty() {
            let id = ids[self.rng.usize(..ids.len())].clone();
            let request = authed(pb::ToggleTaskRequest { id }, user);
            return ("toggle", self.client.toggle_task(request).await.map(|_| ()));
        }
        let request = authed(
            pb::ListTasksRequest {
                page_size: self.page_size,
                ..Default::default()
            },
            user,
        );
        ("list", self.client.list_tasks(request).await.map(|_| ()))
    }
}

/// `n` page walkers over `users`, dealt out.
pub fn list_walkers<'a>(
    channels: &'a [Channel],
    users: &'a [BenchUser],
    n: usize,
    page_size: i32,
) -> impl Iterator<Item = ListPages> + 'a {
    (0..n).map(move |w| ListPages {
        client: task_client(channels, w),
        page_size,
        users: deal(users, n, w)
            .into_iter()
            .map(|u| (u, String::new()))
            .collect(),
        rng: Rng::with_seed(0x5eed + w as u64),
    })
}

/// CreateTask for a random one of its users.
pub struct Create {
    pub client: TaskServiceClient<Channel>,
    pub users: Vec<BenchUser>,
    pub rng: Rng,
    pub made: u64,
}

impl Worker for Create {
    async fn call(&mut self) -> Outcome {
        let user = &self.users[self.rng.usize(..self.users.len())];
        self.made += 1;
        let request = authed(
            pb::CreateTaskRequest {
                title: format!("load-bench task {}", self.made),
                description: "made by load-bench create".into(),
                request_id: String::new(),
            },
            user,
        );
        ("create", self.client.create_task(request).await.map(|_| ()))
    }
}

/// SignIn with one of the accounts (all with the same password).
pub struct SignIn {
    pub client: AuthServiceClient<Channel>,
    pub emails: Vec<String>,
    pub password: String,
    pub rng: Rng,
}

impl Worker for SignIn {
    async fn call(&mut self) -> Outcome {
        let email = self.emails[self.rng.usize(..self.emails.len())].clone();
        let request = SignInRequest {
            email,
            password: self.password.clone(),
        };
        ("sign_in", self.client.sign_in(request).await.map(|_| ()))
    }
}
