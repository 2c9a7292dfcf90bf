/**
 * The peer's bandwidth budgets per region link: mesh-client/bandwidth.ts,
 * where the replication worker's endpoint links (issue 17) share them.
 */
export { type Bucket, charge, LinkBudgets } from "../mesh-client/bandwidth.js";
