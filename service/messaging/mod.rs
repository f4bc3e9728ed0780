//! MessagingService. Until messaging lands, every RPC answers UNIMPLEMENTED (through
//! the default methods that tonic generates), behind the same authentication.

use crate::pb::messaging_service_server;

/// The MessagingService implementation.
#[derive(Debug, Default, Clone)]
pub struct MessagingServer;

#[tonic::async_trait]
impl messaging_service_server::MessagingService for MessagingServer {}
