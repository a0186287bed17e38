//! gRPC server reflection, v1 and v1alpha, from one catalog of descriptors.
//!
//! Written here rather than taken from tonic-reflection (whose generated types it uses) for
//! two behaviours clients depend on: both versions list *and resolve* the same services
//! (grpcurl asks v1alpha, `buf curl` asks v1, and GUI clients resolve every listed service),
//! and a request for an unknown symbol is answered in the stream with an `error_response`
//! (NOT_FOUND), as gRPC's reference servers do, instead of ending the stream.
//!
//! Like grpc-go, a file is sent with the files it imports, each file at most once per stream
//! (the one asked for is always sent).

use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};
use std::{
    collections::{HashMap, HashSet, VecDeque},
    pin::Pin,
    sync::Arc,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_reflection::pb::{v1, v1alpha};
use v1::{server_reflection_request::MessageRequest, server_reflection_response::MessageResponse};

/// A `FileDescriptorSet` read as raw files, so each file is served byte for byte as compiled
/// (custom options survive, which decoding into `prost_types` would drop).
#[derive(Clone, PartialEq, Message)]
struct RawFileSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct File {
    encoded: Vec<u8>,
    imports: Vec<String>,
}

/// Every file and symbol reflection can describe, and the services it lists.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    services: Vec<String>,
    files: HashMap<String, File>,
    /// Fully qualified symbol → the file defining it.
    symbols: HashMap<String, String>,
    /// Extended message → (field number, file defining the extension).
    extensions: HashMap<String, Vec<(i32, String)>>,
    /// Every service defined → its methods' names.
    methods: HashMap<String, Vec<String>>,
}

impl Catalog {
    /// A catalog of the encoded descriptor sets (the first definition of a file wins),
    /// listing `services`.
    pub(crate) fn new(
        sets: &[&[u8]],
        services: impl IntoIterator<Item = String>,
    ) -> Result<Self, prost::DecodeError> {
        let mut catalog = Self {
            services: services.into_iter().collect(),
            ..Self::default()
        };
        for set in sets {
            for encoded in RawFileSet::decode(*set)?.file {
                let file = FileDescriptorProto::decode(encoded.as_slice())?;
                let name = file.name().to_owned();
                if catalog.files.contains_key(&name) {
                    continue;
                }
                catalog.index(&file);
                catalog.files.insert(
                    name,
                    File {
                        encoded,
                        imports: file.dependency.clone(),
                    },
                );
            }
        }
        Ok(catalog)
    }

    /// The listed services' methods, as (service, method) names.
    pub(crate) fn listed_methods(&self) -> Vec<(String, String)> {
        self.services
            .iter()
            .flat_map(|service| {
                self.methods
                    .get(service)
                    .into_iter()
                    .flatten()
                    .map(move |method| (service.clone(), method.clone()))
            })
            .collect()
    }

    fn index(&mut self, file: &FileDescriptorProto) {
        let name = file.name();
        let package = file.package();
        let mut add = |symbol: String| {
            self.symbols
                .entry(symbol)
                .or_insert_with(|| name.to_owned());
        };
        for message in &file.message_type {
            index_message(package, message, &mut add);
        }
        for en in &file.enum_type {
            index_enum(package, en, &mut add);
        }
        for extension in &file.extension {
            add(qualify(package, extension.name()));
        }
        for service in &file.service {
            let service_name = qualify(package, service.name());
            for method in &service.method {
                add(qualify(&service_name, method.name()));
            }
            self.methods
                .entry(service_name.clone())
                .or_insert_with(|| service.method.iter().map(|m| m.name().to_owned()).collect());
            add(service_name);
        }
        let mut extensions = Vec::new();
        collect_extensions(&file.extension, &file.message_type, &mut extensions);
        for extension in extensions {
            self.extensions
                .entry(extension.extendee().trim_start_matches('.').to_owned())
                .or_default()
                .push((extension.number(), name.to_owned()));
        }
    }

    /// The answer to one request of a stream; `sent` holds the files this stream already got.
    fn answer(
        &self,
        request: v1::ServerReflectionRequest,
        sent: &mut HashSet<String>,
    ) -> v1::ServerReflectionResponse {
        let message = match &request.message_request {
            None => Err(Status::invalid_argument("empty reflection request")),
            Some(MessageRequest::ListServices(_)) => Ok(MessageResponse::ListServicesResponse(
                v1::ListServiceResponse {
                    service: self
                        .services
                        .iter()
                        .map(|name| v1::ServiceResponse { name: name.clone() })
                        .collect(),
                },
            )),
            Some(MessageRequest::FileByFilename(name)) => self.files_from(name, sent),
            Some(MessageRequest::FileContainingSymbol(symbol)) => {
                match self.symbols.get(symbol.trim_start_matches('.')) {
                    Some(file) => self.files_from(file, sent),
                    None => Err(Status::not_found(format!("symbol not found: {symbol}"))),
                }
            }
            Some(MessageRequest::FileContainingExtension(wanted)) => {
                let file = self
                    .extensions
                    .get(wanted.containing_type.trim_start_matches('.'))
                    .and_then(|all| all.iter().find(|(n, _)| *n == wanted.extension_number));
                match file {
                    Some((_, file)) => self.files_from(file, sent),
                    None => Err(Status::not_found(format!(
                        "no extension {} of {}",
                        wanted.extension_number, wanted.containing_type
                    ))),
                }
            }
            Some(MessageRequest::AllExtensionNumbersOfType(message)) => {
                let message = message.trim_start_matches('.');
                if self.symbols.contains_key(message) {
                    let numbers = self.extensions.get(message).map_or_else(Vec::new, |all| {
                        all.iter().map(|(number, _)| *number).collect()
                    });
                    Ok(MessageResponse::AllExtensionNumbersResponse(
                        v1::ExtensionNumberResponse {
                            base_type_name: message.to_owned(),
                            extension_number: numbers,
                        },
                    ))
                } else {
                    Err(Status::not_found(format!("type not found: {message}")))
                }
            }
        };
        let message_response = match message {
            Ok(message) => message,
            Err(status) => MessageResponse::ErrorResponse(v1::ErrorResponse {
                error_code: status.code() as i32,
                error_message: status.message().to_owned(),
            }),
        };
        v1::ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: Some(request),
            message_response: Some(message_response),
        }
    }

    /// `name` and, breadth first, the files it imports that this stream has not been sent.
    fn files_from(
        &self,
        name: &str,
        sent: &mut HashSet<String>,
    ) -> Result<MessageResponse, Status> {
        let Some(first) = self.files.get(name) else {
            return Err(Status::not_found(format!("file not found: {name}")));
        };
        sent.insert(name.to_owned());
        let mut out = vec![first.encoded.clone()];
        let mut queue: VecDeque<&str> = first.imports.iter().map(String::as_str).collect();
        while let Some(import) = queue.pop_front() {
            if !sent.insert(import.to_owned()) {
                continue;
            }
            if let Some(file) = self.files.get(import) {
                out.push(file.encoded.clone());
                queue.extend(file.imports.iter().map(String::as_str));
            }
        }
        Ok(MessageResponse::FileDescriptorResponse(
            v1::FileDescriptorResponse {
                file_descriptor_proto: out,
            },
        ))
    }
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

fn index_message(scope: &str, message: &DescriptorProto, add: &mut impl FnMut(String)) {
    let name = qualify(scope, message.name());
    for field in message.field.iter().chain(&message.extension) {
        add(qualify(&name, field.name()));
    }
    for oneof in &message.oneof_decl {
        add(qualify(&name, oneof.name()));
    }
    for nested in &message.nested_type {
        index_message(&name, nested, add);
    }
    for en in &message.enum_type {
        index_enum(&name, en, add);
    }
    add(name);
}

/// An enum and its values; as in protobuf's scoping, values are siblings of their enum.
fn index_enum(scope: &str, en: &EnumDescriptorProto, add: &mut impl FnMut(String)) {
    for value in &en.value {
        add(qualify(scope, value.name()));
    }
    add(qualify(scope, en.name()));
}

fn collect_extensions<'a>(
    top: &'a [FieldDescriptorProto],
    messages: &'a [DescriptorProto],
    out: &mut Vec<&'a FieldDescriptorProto>,
) {
    out.extend(top);
    for message in messages {
        collect_extensions(&message.extension, &message.nested_type, out);
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The reflection service of both versions over one [`Catalog`].
#[derive(Debug, Clone)]
pub(crate) struct Reflection(Arc<Catalog>);

impl Reflection {
    pub(crate) fn new(catalog: Catalog) -> Self {
        Self(Arc::new(catalog))
    }

    pub(crate) fn v1(&self) -> v1::server_reflection_server::ServerReflectionServer<Self> {
        v1::server_reflection_server::ServerReflectionServer::new(self.clone())
    }

    pub(crate) fn v1alpha(
        &self,
    ) -> v1alpha::server_reflection_server::ServerReflectionServer<Self> {
        v1alpha::server_reflection_server::ServerReflectionServer::new(self.clone())
    }
}

#[tonic::async_trait]
impl v1::server_reflection_server::ServerReflection for Reflection {
    type ServerReflectionInfoStream = ResponseStream<v1::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<v1::ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        let catalog = Arc::clone(&self.0);
        let mut sent = HashSet::new();
        let answers = request
            .into_inner()
            .map(move |request| Ok(catalog.answer(request?, &mut sent)));
        Ok(Response::new(Box::pin(answers)))
    }
}

/// v1alpha's messages are v1's under another package, field for field: the same wire format.
#[tonic::async_trait]
impl v1alpha::server_reflection_server::ServerReflection for Reflection {
    type ServerReflectionInfoStream = ResponseStream<v1alpha::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<v1alpha::ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        let catalog = Arc::clone(&self.0);
        let mut sent = HashSet::new();
        let answers = request.into_inner().map(move |request| {
            let answer = catalog.answer(transcode(&request?)?, &mut sent);
            transcode(&answer)
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

fn transcode<A: Message, B: Message + Default>(message: &A) -> Result<B, Status> {
    B::decode(message.encode_to_vec().as_slice())
        .map_err(|error| Status::new(Code::Internal, format!("reflection transcoding: {error}")))
}

#[cfg(test)]
mod tests;
