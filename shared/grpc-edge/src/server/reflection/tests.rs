#![allow(clippy::unwrap_used, clippy::panic)]

use super::{Catalog, MessageRequest, MessageResponse, v1};
use std::collections::HashSet;

fn catalog() -> Catalog {
    Catalog::new(
        &[
            todo_api::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ],
        ["todo.task.v1.TaskService".to_owned()],
    )
    .unwrap()
}

fn ask(catalog: &Catalog, request: MessageRequest, sent: &mut HashSet<String>) -> MessageResponse {
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    catalog.answer(request, sent).message_response.unwrap()
}

fn file_names(response: MessageResponse) -> Vec<String> {
    use prost::Message;
    let MessageResponse::FileDescriptorResponse(files) = response else {
        panic!("expected files, got {response:?}");
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|f| {
            prost_types::FileDescriptorProto::decode(f.as_slice())
                .unwrap()
                .name()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_symbol_comes_with_its_imports_once_per_stream() {
    let catalog = catalog();
    let mut sent = HashSet::new();
    let symbol = MessageRequest::FileContainingSymbol("todo.task.v1.Task".into());
    let first = file_names(ask(&catalog, symbol.clone(), &mut sent));
    assert_eq!(first[0], "todo/task/v1/task.proto");
    assert!(
        first.contains(&"google/protobuf/timestamp.proto".to_owned()),
        "{first:?}"
    );
    assert_eq!(
        file_names(ask(&catalog, symbol, &mut sent)),
        ["todo/task/v1/task.proto"]
    );
}

#[test]
fn methods_fields_and_enum_values_resolve_to_their_file() {
    let catalog = catalog();
    for symbol in [
        "todo.task.v1.TaskService.CreateTask",
        ".todo.task.v1.Task.title",
        "grpc.health.v1.HealthCheckResponse.SERVING",
    ] {
        let names = file_names(ask(
            &catalog,
            MessageRequest::FileContainingSymbol(symbol.into()),
            &mut HashSet::new(),
        ));
        assert!(!names.is_empty(), "{symbol}");
    }
}

#[test]
fn unknown_symbols_files_and_extensions_are_answered_with_not_found() {
    let catalog = catalog();
    for request in [
        MessageRequest::FileContainingSymbol("no.such.Symbol".into()),
        MessageRequest::FileByFilename("no/such.proto".into()),
        MessageRequest::AllExtensionNumbersOfType("no.such.Message".into()),
        MessageRequest::FileContainingExtension(v1::ExtensionRequest {
            containing_type: "todo.task.v1.Task".into(),
            extension_number: 100,
        }),
    ] {
        let MessageResponse::ErrorResponse(error) =
            ask(&catalog, request.clone(), &mut HashSet::new())
        else {
            panic!("{request:?} should fail");
        };
        assert_eq!(
            error.error_code,
            tonic::Code::NotFound as i32,
            "{request:?}"
        );
    }
}

#[test]
fn a_known_message_has_an_empty_list_of_extension_numbers() {
    let response = ask(
        &catalog(),
        MessageRequest::AllExtensionNumbersOfType("todo.task.v1.Task".into()),
        &mut HashSet::new(),
    );
    let MessageResponse::AllExtensionNumbersResponse(numbers) = response else {
        panic!("{response:?}");
    };
    assert!(numbers.extension_number.is_empty());
}
