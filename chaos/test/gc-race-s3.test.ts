/**
 * The seeded GC race of ./gc-race.test.ts on the S3 store (`meridian up
 * --s3`: each region's bucket on the bundled S3 server), where setting a
 * blob aside is a copy then a delete rather than a rename: the same plan,
 * the same checks, 0 live bytes lost.
 */
process.env.MERIDIAN_GC_RACE_STORE = "s3";
await import("./gc-race.test.js");
