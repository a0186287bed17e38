//! What both servers do before any handler runs, as the clients users have see it: reflection
//! (grpcurl asks v1alpha, `buf curl` and GUI clients ask v1) and the request size limit, on
//! native gRPC and on grpc-web.

use crate::helpers::*;
use std::net::SocketAddr;
use todo_api::{todo::auth::v1 as auth_pb, todo::task::v1 as pb};
use tonic::Code;
use tonic_reflection::pb::{v1, v1alpha};
use tonic_types::StatusExt;

/// What a reflection answer was, whichever version gave it.
#[derive(Debug, PartialEq)]
enum Answer {
    Services(Vec<String>),
    Files(usize),
    Error(i32),
    Other,
}

/// Sends `requests` (None = ListServices, Some(symbol) = FileContainingSymbol) on one stream
/// of reflection v1, or of v1alpha (whose messages are v1's, field for field).
async fn ask(addr: SocketAddr, v1alpha: bool, requests: &[Option<String>]) -> Vec<Answer> {
    use prost::Message;
    use v1::{
        server_reflection_request::MessageRequest as Req,
        server_reflection_response::MessageResponse as Res,
    };
    fn transcode<A: Message, B: Message + Default>(message: &A) -> B {
        B::decode(message.encode_to_vec().as_slice()).unwrap()
    }
    let requests: Vec<_> = requests
        .iter()
        .map(|symbol| v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(match symbol {
                None => Req::ListServices(String::new()),
                Some(symbol) => Req::FileContainingSymbol(symbol.clone()),
            }),
        })
        .collect();
    let mut responses: Vec<v1::ServerReflectionResponse> = Vec::new();
    if v1alpha {
        let requests: Vec<v1alpha::ServerReflectionRequest> =
            requests.iter().map(transcode).collect();
        let mut client =
            v1alpha::server_reflection_client::ServerReflectionClient::new(channel(addr).await);
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        while let Some(response) = stream.message().await.unwrap() {
            responses.push(transcode(&response));
        }
    } else {
        let mut client =
            v1::server_reflection_client::ServerReflectionClient::new(channel(addr).await);
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        while let Some(response) = stream.message().await.unwrap() {
            responses.push(response);
        }
    }
    responses
        .into_iter()
        .map(|response| match response.message_response {
            Some(Res::ListServicesResponse(list)) => {
                Answer::Services(list.service.into_iter().map(|s| s.name).collect())
            }
            Some(Res::FileDescriptorResponse(files)) => {
                Answer::Files(files.file_descriptor_proto.len())
            }
            Some(Res::ErrorResponse(error)) => Answer::Error(error.error_code),
            _ => Answer::Other,
        })
        .collect()
}

#[tokio::test]
async fn both_reflection_versions_resolve_every_service_they_list_and_survive_unknown_symbols() {
    let stack = TestStack::spawn().await;
    for (addr, api) in [
        (stack.auth_addr, "todo.auth.v1.AuthService"),
        (stack.task_addr, "todo.task.v1.TaskService"),
    ] {
        for v1alpha in [false, true] {
            let [Answer::Services(listed)] = &ask(addr, v1alpha, &[None]).await[..] else {
                panic!("no service list from {addr}");
            };
            for expected in [
                api,
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ] {
                assert!(
                    listed.iter().any(|s| s == expected),
                    "{expected}: {listed:?}"
                );
            }
            // Every listed service, with an unknown symbol in the middle: the unknown one is
            // answered NOT_FOUND in the stream, and the stream goes on.
            let mut symbols: Vec<_> = listed.iter().cloned().map(Some).collect();
            symbols.insert(1, Some("no.such.Service".to_owned()));
            let answers = ask(addr, v1alpha, &symbols).await;
            assert_eq!(answers.len(), symbols.len(), "{answers:?}");
            for (symbol, answer) in symbols.iter().zip(&answers) {
                match symbol.as_deref() {
                    Some("no.such.Service") => {
                        assert_eq!(*answer, Answer::Error(Code::NotFound as i32))
                    }
                    _ => assert!(
                        matches!(answer, Answer::Files(n) if *n >= 1),
                        "{symbol:?} (v1alpha: {v1alpha}) at {addr}: {answer:?}"
                    ),
                }
            }
        }
    }
}

#[tokio::test]
async fn a_megabyte_request_is_resource_exhausted_with_its_limit_on_both_services() {
    let stack = TestStack::spawn().await;
    let ada = stack.user("ada@example.com").await;
    let huge = "x".repeat(1024 * 1024);

    let status = stack
        .auth_client
        .clone()
        .sign_in(auth_pb::SignInRequest {
            email: "ada@example.com".into(),
            password: huge.clone(),
        })
        .await
        .unwrap_err();
    assert_too_large(&status, "todo.auth.v1");

    let request = with_bearer(
        pb::CreateTaskRequest {
            title: "t".into(),
            description: huge,
            ..Default::default()
        },
        &ada.token,
    );
    let status = ada.tasks.clone().create_task(request).await.unwrap_err();
    assert_too_large(&status, "todo.task.v1");
}

#[track_caller]
fn assert_too_large(status: &tonic::Status, domain: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "REQUEST_TOO_LARGE");
    assert_eq!(info.domain, domain);
    assert_eq!(
        info.metadata.get("maxBytes").map(String::as_str),
        Some("65536")
    );
    assert!(status.message().contains("MAX_REQUEST_BYTES"), "{status:?}");
}

#[tokio::test]
async fn an_oversized_grpc_web_request_gets_the_same_answer_over_http1() {
    use base64::{
        Engine,
        engine::general_purpose::{STANDARD, STANDARD_NO_PAD},
    };
    let stack = TestStack::spawn().await;
    for (addr, method) in [
        (stack.auth_addr, "todo.auth.v1.AuthService/SignIn"),
        (stack.task_addr, "todo.task.v1.TaskService/CreateTask"),
    ] {
        let length: u32 = 70_000;
        let mut body = vec![0u8];
        body.extend_from_slice(&length.to_be_bytes());
        body.resize(5 + length as usize, b'x');
        let origin = "Origin: http://localhost:5173\r\n";
        let response = grpc_web_over_http1(addr, method, origin, &body).await;
        let response = String::from_utf8_lossy(&response);
        let lower = response.to_lowercase();
        assert!(lower.starts_with("http/1.1 200"), "{response}");
        assert!(lower.contains("grpc-status: 8\r\n"), "{response}");
        let details = response
            .lines()
            .find(|line| line.to_lowercase().starts_with("grpc-status-details-bin:"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim())
            .expect("grpc-status-details-bin");
        let details = STANDARD
            .decode(details)
            .or_else(|_| STANDARD_NO_PAD.decode(details))
            .unwrap();
        let text = String::from_utf8_lossy(&details);
        assert!(text.contains("REQUEST_TOO_LARGE"), "{text}");
    }
}
