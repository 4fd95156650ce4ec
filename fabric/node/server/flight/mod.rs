//! Arrow Flight SQL on the node's port, for researchers' own tools (ADBC in Python, R,
//! Go and Java, the Flight SQL JDBC driver, DBeaver, Superset).
//!
//! - Every call needs a researcher (or admin) token, as the Query service does: in
//!   `authorization: Bearer <token>`, or `Basic` with the token as the password; a
//!   Handshake answers with the bearer header to use.
//! - Metadata: `GetSqlInfo`, `GetCatalogs` (one, `zkfabric`), `GetDbSchemas` (one,
//!   `public`), `GetTables` (the node's datasets, with their Arrow schema: see
//!   [`batches::table_schema`]), `GetTableTypes`.
//! - A statement (`CommandStatementQuery`, or a prepared statement without parameters)
//!   is planned, proven and bundled exactly as `Query.Run` does it; what Run takes
//!   besides the SQL comes in call headers ([`STATEMENT_HEADERS`]). GetFlightInfo returns
//!   once the answer is proven, with the answer's schema; `DoGet` streams the answer
//!   ([`batches::answer_batch`]). The bundle comes from the `GetBundle` action (its id
//!   in the body, the bundle's protobuf bytes back: a `.zkf` file) or `Query.GetBundle`.
//! - A statement still proving when asked again is not proven twice ([`statements`]).

mod batches;
mod statements;

use std::{pin::Pin, sync::Arc};

use arrow_flight::{
    encode::FlightDataEncoderBuilder,
    error::FlightError,
    flight_service_server::{FlightService, FlightServiceServer},
    sql::{
        metadata::{SqlInfoData, SqlInfoDataBuilder},
        server::FlightSqlService,
        ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
        ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
        CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
        CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
    },
    Action, ActionType, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, Ticket,
};
use datafusion::arrow::{datatypes::SchemaRef, record_batch::RecordBatch};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{
    metadata::MetadataMap,
    service::interceptor::{InterceptedService, Interceptor},
    Request, Response, Status, Streaming,
};
use zkfabric_proto::v1 as pb;

use super::{auth, store_status, Node};
use crate::node::config::Role;

pub use batches::{BUNDLE_ID, BUNDLE_SHA256};

use self::statements::Statements;

/// The catalog every dataset is listed under.
pub const CATALOG: &str = "zkfabric";
/// The database schema every dataset is listed under.
pub const DB_SCHEMA: &str = "public";
/// The action that returns a bundle by id (the body), as protobuf bytes.
pub const GET_BUNDLE: &str = "GetBundle";

/// The call headers a statement reads, with the `QueryRequest` field each sets: the
/// consent purpose (else the node's default), the epoch (else the latest), the privacy
/// cost on a dp dataset (else the node's defaults), and the researcher's 32-byte nonce in
/// hex (a dp dataset needs one).
pub const STATEMENT_HEADERS: [&str; 6] = [
    "x-zkfabric-purpose",
    "x-zkfabric-epoch",
    "x-zkfabric-epsilon",
    "x-zkfabric-delta",
    "x-zkfabric-nonce",
    "x-zkfabric-path",
];

/// The check every call passes before the service sees it: a researcher's token.
#[derive(Clone)]
pub(crate) struct TokenCheck(Arc<Node>);

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.0.tokens.require(&request, Role::Researcher)?;
        Ok(request)
    }
}

/// The Flight SQL service, behind the interceptor that checks every call's token.
pub(super) type FlightServer = InterceptedService<FlightServiceServer<FlightSqlNode>, TokenCheck>;

/// Serves Flight SQL over `node`, every call checked for a researcher's token.
pub(super) fn server(node: Arc<Node>, limit: usize) -> FlightServer {
    let check = TokenCheck(node.clone());
    let service = FlightServiceServer::new(FlightSqlNode {
        node,
        statements: Statements::default(),
        sql_info: sql_info(),
    })
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    InterceptedService::new(service, check)
}

/// What `GetSqlInfo` reports.
fn sql_info() -> SqlInfoData {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "zkfabric");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, false);
    info.build().expect("a fixed set of SQL infos builds")
}

/// The Flight SQL service of a node.
pub(crate) struct FlightSqlNode {
    node: Arc<Node>,
    statements: Statements,
    sql_info: SqlInfoData,
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// A stream of `batch`, under `schema`.
fn stream(schema: SchemaRef, batch: Result<RecordBatch, FlightError>) -> Response<DoGetStream> {
    let batches = futures::stream::once(async move { batch });
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(data))
}

/// A FlightInfo whose one endpoint's ticket is `command`, with `schema`.
fn flight_info(
    command: impl ProstMessageExt,
    schema: &datafusion::arrow::datatypes::Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding a schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The `QueryRequest` a statement's SQL and call headers make.
fn asked(sql: String, headers: &MetadataMap) -> Result<pb::QueryRequest, Status> {
    let header = |name: &str| -> Result<Option<&str>, Status> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::trim)
                    .map_err(|_| Status::invalid_argument(format!("header {name}: not text")))
            })
            .transpose()
    };
    let parsed = |name: &str, what: &str| -> Result<Option<f64>, Status> {
        header(name)?
            .map(|v| {
                v.parse::<f64>().map_err(|_| {
                    Status::invalid_argument(format!("header {name}: {v:?} is not {what}"))
                })
            })
            .transpose()
    };
    let [purpose, epoch, epsilon, delta, nonce, path] = STATEMENT_HEADERS;
    Ok(pb::QueryRequest {
        path: header(path)?.unwrap_or_default().to_string(),
        sql,
        purpose: header(purpose)?.unwrap_or_default().to_string(),
        epoch: header(epoch)?
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Status::invalid_argument(format!(
                        "header {epoch}: {v:?} is not an epoch number"
                    ))
                })
            })
            .transpose()?,
        epsilon: parsed(epsilon, "a number")?,
        delta: parsed(delta, "a number")?,
        nonce: header(nonce)?
            .map(|v| {
                hex::decode(v).map_err(|_| {
                    Status::invalid_argument(format!("header {nonce}: expected 64 hex digits"))
                })
            })
            .transpose()?
            .unwrap_or_default(),
    })
}

impl FlightSqlNode {
    /// Proves (or joins the proof of) `asked` and describes its answer: the answer's
    /// schema, and a ticket for `DoGet`.
    async fn statement(
        &self,
        asked: pb::QueryRequest,
        caller: &str,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let id = self.statements.answer(&self.node, asked, caller).await?;
        let batch = batches::answer_batch(&self.node.read_bundle(&id)?, &id)?;
        let ticket = TicketStatementQuery {
            statement_handle: id.into_bytes().into(),
        };
        let info = flight_info(ticket, &batch.schema(), descriptor)?;
        Ok(info.map(|i| i.with_total_records(batch.num_rows() as i64)))
    }

    /// The node's datasets and their schemas.
    async fn datasets(&self) -> Result<Vec<(String, SchemaRef)>, Status> {
        self.node
            .with_store(|store| {
                let mut tables = Vec::new();
                for dataset in store.datasets().map_err(store_status)? {
                    let schema = store.schema(&dataset.name).map_err(store_status)?;
                    tables.push((dataset.name, batches::table_schema(&schema)));
                }
                Ok(tables)
            })
            .await
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlNode {
    type FlightService = FlightSqlNode;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // The interceptor has checked the token.
        let token = auth::presented_token(&request)?;
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into_bytes().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(answer)])));
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::unauthenticated("the token is not valid header text"))?;
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.node.tokens.require(&request, Role::Researcher)?;
        let asked = asked(query.query, request.metadata())?;
        self.statement(asked, &caller, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.node.tokens.require(&request, Role::Researcher)?;
        let asked = pb::QueryRequest::decode(query.prepared_statement_handle).map_err(|_| {
            Status::invalid_argument("not a prepared statement handle of this node")
        })?;
        self.statement(asked, &caller, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let id = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("not a statement ticket of this node"))?;
        let batch = batches::answer_batch(&self.node.read_bundle(&id)?, &id)?;
        Ok(stream(batch.schema(), Ok(batch)))
    }

    /// A prepared statement is its request (SQL and call headers), proven when executed:
    /// parameters are refused, and the answer's schema is known once it is proven.
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let asked = asked(query.query, request.metadata())?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: asked.encode_to_vec().into(),
            ..Default::default()
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(query, &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(stream(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            query.clone(),
            &query.into_builder().schema(),
            request.into_inner(),
        )
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG, DB_SCHEMA);
        Ok(stream(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            query.clone(),
            &query.into_builder().schema(),
            request.into_inner(),
        )
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for (name, schema) in self.datasets().await? {
            builder
                .append(CATALOG, DB_SCHEMA, name, "TABLE", &schema)
                .map_err(Status::from)?;
        }
        Ok(stream(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(query, &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("TABLE");
        Ok(stream(builder.schema(), builder.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        flight_info(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        Ok(stream(builder.schema(), builder.build()))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != GET_BUNDLE {
            return Err(Status::invalid_argument(format!(
                "unknown action {:?}: this node's actions are {GET_BUNDLE} and prepared statements'",
                action.r#type
            )));
        }
        let id = String::from_utf8(action.body.to_vec())
            .map_err(|_| Status::invalid_argument("GetBundle: the body is a bundle id"))?;
        let bundle = self.node.read_bundle(id.trim())?;
        let result = arrow_flight::Result::new(bundle.encode_to_vec());
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(vec![Ok(ActionType {
            r#type: GET_BUNDLE.into(),
            description: "The bundle (protobuf bytes, a .zkf file) of the answer whose id \
                          is the body: the zkfabric.bundle_id of the answer's schema"
                .into(),
        })])
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
