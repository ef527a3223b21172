import Foundation
import Logging

/// Turns admin HTTP requests into ``AdminHandler`` calls and their results
/// into HTTP answers. Separate from the socket so routing and validation
/// read (and test) on their own.
struct AdminRouter: Sendable {
    let handler: any AdminHandler
    let logger: Logger

    /// The routes and the method each accepts.
    static let routes: [String: String] = [
        "/status": "GET", "/promote": "POST", "/demote": "POST", "/export": "POST", "/import": "POST", "/log/export": "POST",
    ]

    func respond(to request: HTTPServerRequest) -> HTTPServerResponse {
        guard let method = AdminRouter.routes[request.path] else {
            return AdminRouter.answer(AdminError(.notFound, "no route \(request.path) (routes: \(AdminRouter.routes.keys.sorted().joined(separator: ", ")))"))
        }
        guard request.method == method || (method == "GET" && request.method == "HEAD") else {
            var response = AdminRouter.answer(AdminError(.methodNotAllowed, "\(request.method) \(request.path): use \(method)"))
            response.headers["Allow"] = method
            return response
        }
        let result: Result<AdminActionResult, AdminError>
        switch request.path {
        case "/status":
            return .json(handler.status())
        case "/promote":
            switch AdminRouter.decode(AdminPromoteRequest.self, from: request.body, optional: true) {
            case .failure(let error): return AdminRouter.answer(error)
            case .success(let body):
                logger.notice("admin: promote", metadata: ["force": "\(body?.force ?? false)"])
                result = handler.promote(force: body?.force ?? false)
            }
        case "/demote":
            if case .failure(let error) = AdminRouter.decode(AdminEmptyRequest.self, from: request.body, optional: true) {
                return AdminRouter.answer(error)
            }
            logger.notice("admin: demote")
            result = handler.demote()
        case "/export", "/import", "/log/export":
            let body: AdminTransferRequest
            switch AdminRouter.decode(AdminTransferRequest.self, from: request.body, optional: false) {
            case .failure(let error): return AdminRouter.answer(error)
            case .success(let decoded): body = decoded!
            }
            if let problem = AdminRouter.validate(body) { return AdminRouter.answer(problem) }
            logger.notice("admin: \(request.path.dropFirst())", metadata: ["database": "\(body.database)", "path": "\(body.path)"])
            switch request.path {
            case "/export": result = handler.export(database: body.database, to: body.path)
            case "/import": result = handler.importDatabase(body.database, from: body.path)
            default: result = handler.exportLog(database: body.database, to: body.path)
            }
        default:
            return AdminRouter.answer(AdminError(.notFound, "no route \(request.path)"))
        }
        switch result {
        case .success(let value):
            return .json(value)
        case .failure(let error):
            logger.warning("admin: refused", metadata: ["route": "\(request.path)", "error": "\(error)"])
            return AdminRouter.answer(error)
        }
    }

    static func answer(_ error: AdminError) -> HTTPServerResponse {
        .json(error, status: error.httpStatus)
    }

    static func validate(_ body: AdminTransferRequest) -> AdminError? {
        if body.database.isEmpty { return AdminError(.badRequest, "field \"database\" must not be empty") }
        if body.database.contains("/") || body.database == "." || body.database == ".." {
            return AdminError(.badRequest, "field \"database\": \"\(body.database)\" is not a database name")
        }
        if !body.path.hasPrefix("/") { return AdminError(.badRequest, "field \"path\": \"\(body.path)\" must be an absolute path") }
        return nil
    }

    /// Decodes a JSON body; an empty body is `nil` when `optional`. Errors name the field.
    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8], optional: Bool) -> Result<T?, AdminError> {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) {
            return optional ? .success(nil) : .failure(AdminError(.badRequest, "missing JSON body"))
        }
        do {
            return .success(try JSONDecoder().decode(T.self, from: Data(body)))
        } catch let error as DecodingError {
            return .failure(AdminError(.badRequest, describe(error)))
        } catch {
            return .failure(AdminError(.badRequest, "malformed JSON: \(error)"))
        }
    }

    /// One line naming the field at fault.
    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String { path.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let context):
            let name = field(context.codingPath + [key])
            return "missing field \"\(name)\""
        case .typeMismatch(let type, let context):
            return context.codingPath.isEmpty ? "body must be a JSON object" : "field \"\(field(context.codingPath))\" must be \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "field \"\(field(context.codingPath))\" must be \(typeName(type)), not null"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                // Some Foundation versions say where the parser stopped.
                return context.underlyingError.map { "malformed JSON: \($0)" } ?? "malformed JSON"
            }
            return "field \"\(field(context.codingPath))\": \(context.debugDescription)"
        @unknown default:
            return "malformed JSON"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        default: return "\(type)"
        }
    }
}
