/**
 * The standard gRPC health service (grpc.health.v1, protocol/proto/health.proto)
 * so that load balancers and probes can ask a peer whether it serves. Statuses
 * are kept per service name ("" is the whole server); Watch streams the
 * current status and every later change until the caller cancels.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { LOADER_OPTIONS, protoPath } from "../mesh-client/proto.js";
import type { HealthHandlers } from "../protocol/generated/grpc/health/v1/Health.js";
import type { _grpc_health_v1_HealthCheckResponse_ServingStatus__Output as ServingStatus } from "../protocol/generated/grpc/health/v1/HealthCheckResponse.js";
import type { ProtoGrpcType } from "../protocol/generated/health.js";

export type { ServingStatus };

let loaded: ProtoGrpcType | undefined;

/** The loaded grpc.health.v1 package (cached): `.grpc.health.v1.Health` is the client constructor and `.service`. */
export function healthPackage(): ProtoGrpcType {
  loaded ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(protoPath("health.proto"), LOADER_OPTIONS),
  ) as unknown as ProtoGrpcType;
  return loaded;
}

export class HealthService {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #watchers = new Set<{ service: string; send: (s: ServingStatus) => void }>();

  constructor(initial: Record<string, ServingStatus> = { "": "SERVING" }) {
    for (const [service, status] of Object.entries(initial)) this.#statuses.set(service, status);
  }

  set(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    for (const w of this.#watchers) if (w.service === service) w.send(status);
  }

  /** Mark every known service NOT_SERVING (at shutdown). */
  shutdown(): void {
    for (const service of [...this.#statuses.keys()]) this.set(service, "NOT_SERVING");
  }

  readonly handlers: HealthHandlers = {
    Check: (call, callback) => {
      const status = this.#statuses.get(call.request.service);
      if (status === undefined) callback({ code: grpc.status.NOT_FOUND, details: "unknown service" });
      else callback(null, { status });
    },
    Watch: (call) => {
      const watcher = {
        service: call.request.service,
        send: (status: ServingStatus) => {
          call.write({ status });
        },
      };
      watcher.send(this.#statuses.get(watcher.service) ?? "SERVICE_UNKNOWN");
      this.#watchers.add(watcher);
      call.on("cancelled", () => this.#watchers.delete(watcher));
      call.on("close", () => this.#watchers.delete(watcher));
    },
  };
}
