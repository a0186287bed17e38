//! The `mixed` workload: 80% reads (40% ListTasks, 40% GetTask), 15% writes (5% each
//! CreateTask, UpdateTask, ToggleTask), 5% DeleteTask, over the worker's own users and the
//! task ids it knows they have.

use crate::{
    load::{Outcome, Worker},
    workers::{Rng, UserTasks, authed},
};
use todo_api::{
    todo::task::v1::task_service_client::TaskServiceClient,
    todo::task::v1::{self as pb},
};
use tonic::transport::Channel;

/// A mixed-workload worker.
pub struct Mixed {
    pub client: TaskServiceClient<Channel>,
    pub users: Vec<UserTasks>,
    pub rng: Rng,
    pub made: u64,
}

impl Worker for Mixed {
    async fn call(&mut self) -> Outcome {
        let roll = self.rng.usize(..100);
        let u = self.rng.usize(..self.users.len());
        let pick = self.rng.usize(..);
        let UserTasks { user, ids } = &mut self.users[u];
        let client = &mut self.client;
        // Operations on an existing task need one; a user with none gets a create.
        let existing = (!ids.is_empty()).then(|| pick % ids.len());
        match (roll, existing) {
            (0..40, _) => {
                let request = authed(
                    pb::ListTasksRequest {
                        page_size: 20,
                        ..Default::default()
                    },
                    user,
                );
                ("list", client.list_tasks(request).await.map(|_| ()))
            }
            (40..80, Some(i)) => {
                let request = authed(pb::GetTaskRequest { id: ids[i].clone() }, user);
                ("get", client.get_task(request).await.map(|_| ()))
            }
            (80..85, Some(i)) => {
                self.made += 1;
                let task = pb::Task {
                    id: ids[i].clone(),
                    title: format!("renamed by load-bench {}", self.made),
                    ..Default::default()
                };
                let request = authed(
                    pb::UpdateTaskRequest {
                        task: Some(task),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["title".into()],
                        }),
                    },
                    user,
                );
                ("update", client.update_task(request).await.map(|_| ()))
            }
            (85..90, Some(i)) => {
                let request = authed(pb::ToggleTaskRequest { id: ids[i].clone() }, user);
                ("toggle", client.toggle_task(request).await.map(|_| ()))
            }
            (90..95, Some(i)) => {
                let id = ids.swap_remove(i);
                let request = authed(
                    pb::DeleteTaskRequest {
                        id,
                        etag: String::new(),
                    },
                    user,
                );
                ("delete", client.delete_task(request).await.map(|_| ()))
            }
            _ => {
                self.made += 1;
                let request = authed(
                    pb::CreateTaskRequest {
                        title: format!("load-bench task {}", self.made),
                        ..Default::default()
                    },
                    user,
                );
                let result = client.create_task(request).await.map(|task| {
                    ids.push(task.into_inner().id);
                });
                ("create", result)
            }
        }
    }
}
