/**
 * The dump (every key and value) the view made of view-scenario.ts's history
 * before it was split into projections (issue 12), generated once from that
 * code. The projections' contract suite compares today's dump with it: the
 * on-disk layout must not drift without a VIEW_SCHEMA bump (and then this
 * file is regenerated with the new layout, on purpose).
 *
 * Regenerated once since, by applying view-scenario.ts to a fresh view, to add
 * the `a!` keys of the activity index (issue 16,
 * node/data/projections/activity.ts): an addition only, every other key as
 * before, so no VIEW_SCHEMA bump (a view written before lacks only the index
 * entries of events applied before the upgrade).
 *
 * And once more (issue 17) for the `wh!` keys of webhook subscriptions
 * (node/data/projections/webhooks.ts): additions only, no VIEW_SCHEMA bump.
 *
 * And for issue 17 external endpoints (`ep!` keys of node/data/projections/endpoints.ts): additions only, no VIEW_SCHEMA bump.
 *
 * And for issue 18 token revocations (`tr!` keys of node/data/projections/identity.ts): additions only.
 *
 * And for issue 18 OIDC users (`ou!`, `os!` keys of node/data/projections/oidc-users.ts): additions only, no VIEW_SCHEMA bump.
 *
 * And for issue 18 block-pull policies (`pp!` keys of node/data/projections/pull-policies.ts): additions only.
 *
 * And for issue 17 promotion (`gate!`, `pro!`, `prt!` keys of node/data/projections/promotions.ts) and
 * pull-through cache projects (node/data/projections/proxies.ts): additions only.
 */
export const VIEW_LAYOUT_GOLDEN: Array<[string, string]> = [
  [
    "A!000000000000019.000000000!sc-b-19",
    '{"kind":"delete-breaker","message":"halted","policy":"mirror-b","origin":"b","at":"1970-01-01T00:00:19.000Z","id":"sc-b-19"}',
  ],
  [
    "B!mirror-b",
    '{"w":{"id":"sc-a-20","origin":"a","hlc":{"wall":20,"logical":0},"at":"1970-01-01T00:00:20.000Z","actor":"admin"}}',
  ],
  [
    "C!team/",
    '{"tagMerge":"lww","durability":"async","w":{"id":"sc-a-1","origin":"a","hlc":{"wall":1,"logical":0},"at":"1970-01-01T00:00:01.000Z","actor":"admin"}}',
  ],
  [
    "C!team/app",
    '{"tagMerge":"first-write","w":{"id":"sc-a-13","origin":"a","hlc":{"wall":13,"logical":0},"at":"1970-01-01T00:00:13.000Z","actor":"admin"}}',
  ],
  [
    "D!bob",
    '{"w":{"id":"sc-b-26","origin":"b","hlc":{"wall":26,"logical":0},"at":"1970-01-01T00:00:26.000Z","actor":"admin"}}',
  ],
  [
    "G!sha256:4d4581be4752a4aeab6fce14c8fda7ba194ee27e248f38ba806b9097a7bb7604!a",
    '{"digest":"sha256:4d4581be4752a4aeab6fce14c8fda7ba194ee27e248f38ba806b9097a7bb7604","region":"a","runId":"gc-sc","reason":"orphan","size":20,"repos":["team/app"],"at":"1970-01-01T00:00:51.000Z","actor":"admin"}',
  ],
  [
    "H!team/app!000000000000",
    '{"home":"a","w":{"id":"sc-a-13","origin":"a","hlc":{"wall":13,"logical":0},"at":"1970-01-01T00:00:13.000Z","actor":"admin"}}',
  ],
  [
    "I!frozen!000000000000035.000000000!a!sc-a-35",
    '{"name":"frozen","rule":{"name":"frozen","repositories":"frozen/*","tags":"v*"},"hlc":{"wall":35,"logical":0},"origin":"a","eventId":"sc-a-35","actor":"admin","at":"1970-01-01T00:00:35.000Z"}',
  ],
  [
    "I!frozen!000000000000036.000000000!b!sc-b-36",
    '{"name":"frozen","rule":null,"hlc":{"wall":36,"logical":0},"origin":"b","eventId":"sc-b-36","actor":"admin","at":"1970-01-01T00:00:36.000Z"}',
  ],
  ["L!team/app!sha256:0b57c4413b6fbb0498432b80919fce8f15158934c95d6650b6864dee6aebb2d7", ""],
  ["L!team/app!sha256:2c16fc038f0b9b1dd37fdfd1ebc2fe2d1314eeffacb338a622e47f4e090bc1ff", ""],
  ["L!team/app!sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279", ""],
  [
    "M!team/app!sha256:0b57c4413b6fbb0498432b80919fce8f15158934c95d6650b6864dee6aebb2d7",
    '{"record":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":50,"blobs":[],"manifests":[],"subject":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279","artifactType":"application/vnd.example.sbom"},"live":true,"w":{"id":"sc-a-6","origin":"a","hlc":{"wall":6,"logical":0},"at":"1970-01-01T00:00:06.000Z","actor":"admin"}}',
  ],
  [
    "M!team/app!sha256:2c16fc038f0b9b1dd37fdfd1ebc2fe2d1314eeffacb338a622e47f4e090bc1ff",
    '{"record":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":120,"blobs":["sha256:4d4581be4752a4aeab6fce14c8fda7ba194ee27e248f38ba806b9097a7bb7604"],"manifests":[]},"live":true,"w":{"id":"sc-b-4","origin":"b","hlc":{"wall":4,"logical":0},"at":"1970-01-01T00:00:04.000Z","actor":"admin"}}',
  ],
  [
    "M!team/app!sha256:9ba69afc04ec0016cd2dfa4bc2a1df7bba5de141d3397f85ef84c6cdd279471d",
    '{"record":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":130,"blobs":["sha256:d66bb68b0694f5e8f359b835baf543f37e485ad48ac1137e7a4557d1fa08e55c"],"manifests":[]},"live":false,"w":{"id":"sc-a-32","origin":"a","hlc":{"wall":32,"logical":0},"at":"1970-01-01T00:00:32.000Z","actor":"admin"}}',
  ],
  [
    "M!team/app!sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279",
    '{"record":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":100,"blobs":["sha256:d66bb68b0694f5e8f359b835baf543f37e485ad48ac1137e7a4557d1fa08e55c"],"manifests":[]},"live":true,"w":{"id":"sc-a-3","origin":"a","hlc":{"wall":3,"logical":0},"at":"1970-01-01T00:00:03.000Z","actor":"admin"}}',
  ],
  [
    "P!gone",
    '{"policy":null,"w":{"id":"sc-b-16","origin":"b","hlc":{"wall":16,"logical":0},"at":"1970-01-01T00:00:16.000Z","actor":"admin"}}',
  ],
  [
    "P!mirror-b",
    '{"policy":{"name":"mirror-b","destinations":["b"]},"w":{"id":"sc-a-14","origin":"a","hlc":{"wall":14,"logical":0},"at":"1970-01-01T00:00:14.000Z","actor":"admin"}}',
  ],
  [
    "Q!mirror-b!r1",
    '{"name":"mirror-b","runId":"r1","results":{"b":{"outcome":"ok","stats":{"copied":3},"at":"1970-01-01T00:00:18.000Z"}},"requested":{"at":"1970-01-01T00:00:17.000Z","actor":"admin","origin":"a"}}',
  ],
  [
    "R!team/app!sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279!sha256:0b57c4413b6fbb0498432b80919fce8f15158934c95d6650b6864dee6aebb2d7",
    '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0b57c4413b6fbb0498432b80919fce8f15158934c95d6650b6864dee6aebb2d7","size":50,"artifactType":"application/vnd.example.sbom"}',
  ],
  [
    "Z!other/gone",
    '{"w":{"id":"sc-a-11","origin":"a","hlc":{"wall":11,"logical":0},"at":"1970-01-01T00:00:11.000Z","actor":"admin"}}',
  ],
  [
    "a!000000000000009.000000000!sc-c-9",
    '{"id":"sc-c-9","kind":"conflict","region":"c","at":"1970-01-01T00:00:09.000Z","summary":"team/app:latest: b\'s sha256:2c16fc038f0b won over c\'s sha256:c79126217e17","detail":{"repo":"team/app","tag":"latest","winner":{"digest":"sha256:2c16fc038f0b9b1dd37fdfd1ebc2fe2d1314eeffacb338a622e47f4e090bc1ff","origin":"b","id":"sc-b-5","hlc":{"wall":5,"logical":0}},"loser":{"digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279","origin":"c","id":"x-1","hlc":{"wall":5,"logical":0}}}}',
  ],
  [
    "a!000000000000018.000000000!sc-b-18",
    '{"id":"sc-b-18","kind":"policy-run","region":"b","at":"1970-01-01T00:00:18.000Z","summary":"policy mirror-b run ok in b","detail":{"name":"mirror-b","runId":"r1","outcome":"ok","stats":{"copied":3}}}',
  ],
  [
    "a!000000000000019.000000000!sc-b-19",
    '{"id":"sc-b-19","kind":"alert","region":"b","at":"1970-01-01T00:00:19.000Z","summary":"halted","detail":{"alert":"delete-breaker","policy":"mirror-b"}}',
  ],
  [
    "a!000000000000052.000000000!sc-a-52",
    '{"id":"sc-a-52","kind":"gc-run","region":"a","at":"1970-01-01T00:00:52.000Z","summary":"GC run ok in a","detail":{"runId":"gc-sc","outcome":"ok","stats":{"collected":1}}}',
  ],
  [
    "a!000000000000104.000000000!sc-a-104",
    '{"id":"sc-a-104","kind":"promotion","region":"a","at":"1970-01-01T00:01:44.000Z","summary":"team/app:v1 (sha256:c79126217e17) promoted to b/prod/app:v1: failed (signature) by admin","detail":{"promotionId":"pr-00112233445566778899aabb","outcome":"failed","source":{"region":"a","repository":"team/app","tag":"v1","digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279"},"destination":{"kind":"region","name":"b","repository":"prod/app","tag":"v1"},"gates":[{"gate":"signature","scope":"destination:b","ok":false,"reason":"signature: none found"}],"actor":"admin"}}',
  ],
  [
    "a!000000000000105.000000000!sc-a-105",
    '{"id":"sc-a-105","kind":"promotion","region":"a","at":"1970-01-01T00:01:45.000Z","summary":"team/app:v1 (sha256:c79126217e17) promoted to b/prod/app:v1: passed by admin","detail":{"promotionId":"pr-00112233445566778899aabb","outcome":"passed","source":{"region":"a","repository":"team/app","tag":"v1","digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279"},"destination":{"kind":"region","name":"b","repository":"prod/app","tag":"v1"},"gates":[{"gate":"signature","scope":"destination:b","ok":true,"reason":"signature: verified"}],"actor":"admin"}}',
  ],
  [
    "b!other/gone!sha256:d66bb68b0694f5e8f359b835baf543f37e485ad48ac1137e7a4557d1fa08e55c",
    '{"size":10,"live":false,"w":{"id":"sc-a-11","origin":"a","hlc":{"wall":11,"logical":0},"at":"1970-01-01T00:00:11.000Z","actor":"admin"}}',
  ],
  [
    "b!team/app!sha256:4d4581be4752a4aeab6fce14c8fda7ba194ee27e248f38ba806b9097a7bb7604",
    '{"size":-1,"live":false,"w":{"id":"sc-b-12","origin":"b","hlc":{"wall":12,"logical":0},"at":"1970-01-01T00:00:12.000Z","actor":"admin"}}',
  ],
  [
    "b!team/app!sha256:d66bb68b0694f5e8f359b835baf543f37e485ad48ac1137e7a4557d1fa08e55c",
    '{"size":10,"live":true,"w":{"id":"sc-a-31","origin":"a","hlc":{"wall":31,"logical":0},"at":"1970-01-01T00:00:31.000Z","actor":"admin"}}',
  ],
  [
    "c!team/app!latest!x-1",
    '{"repo":"team/app","tag":"latest","winner":{"digest":"sha256:2c16fc038f0b9b1dd37fdfd1ebc2fe2d1314eeffacb338a622e47f4e090bc1ff","origin":"b","id":"sc-b-5","hlc":{"wall":5,"logical":0}},"loser":{"digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279","origin":"c","id":"x-1","hlc":{"wall":5,"logical":0}},"origin":"c","at":"1970-01-01T00:00:09.000Z"}',
  ],
  ["e!sc-a-1", "1"],
  ["e!sc-a-10", "10"],
  ["e!sc-a-100", "60"],
  ["e!sc-a-102", "62"],
  ["e!sc-a-103", "63"],
  ["e!sc-a-104", "64"],
  ["e!sc-a-105", "65"],
  ["e!sc-a-11", "11"],
  ["e!sc-a-120", "70"],
  ["e!sc-a-122", "72"],
  ["e!sc-a-13", "13"],
  ["e!sc-a-14", "14"],
  ["e!sc-a-15", "15"],
  ["e!sc-a-161", "55"],
  ["e!sc-a-162", "56"],
  ["e!sc-a-17", "17"],
  ["e!sc-a-2", "2"],
  ["e!sc-a-20", "20"],
  ["e!sc-a-200", "74"],
  ["e!sc-a-201", "75"],
  ["e!sc-a-204", "78"],
  ["e!sc-a-205", "79"],
  ["e!sc-a-21", "21"],
  ["e!sc-a-22", "22"],
  ["e!sc-a-23", "23"],
  ["e!sc-a-24", "24"],
  ["e!sc-a-240", "57"],
  ["e!sc-a-242", "59"],
  ["e!sc-a-25", "25"],
  ["e!sc-a-250", "66"],
  ["e!sc-a-252", "68"],
  ["e!sc-a-253", "69"],
  ["e!sc-a-27", "27"],
  ["e!sc-a-28", "28"],
  ["e!sc-a-29", "29"],
  ["e!sc-a-3", "3"],
  ["e!sc-a-31", "30"],
  ["e!sc-a-32", "31"],
  ["e!sc-a-33", "32"],
  ["e!sc-a-35", "34"],
  ["e!sc-a-40", "36"],
  ["e!sc-a-42", "38"],
  ["e!sc-a-43", "39"],
  ["e!sc-a-45", "41"],
  ["e!sc-a-50", "42"],
  ["e!sc-a-51", "43"],
  ["e!sc-a-52", "44"],
  ["e!sc-a-6", "6"],
  ["e!sc-a-60", "45"],
  ["e!sc-a-62", "47"],
  ["e!sc-a-7", "7"],
  ["e!sc-a-70", "49"],
  ["e!sc-a-72", "51"],
  ["e!sc-a-73", "52"],
  ["e!sc-a-74", "53"],
  ["e!sc-a-8", "8"],
  ["e!sc-b-101", "61"],
  ["e!sc-b-12", "12"],
  ["e!sc-b-121", "71"],
  ["e!sc-b-123", "73"],
  ["e!sc-b-16", "16"],
  ["e!sc-b-160", "54"],
  ["e!sc-b-18", "18"],
  ["e!sc-b-19", "19"],
  ["e!sc-b-202", "76"],
  ["e!sc-b-203", "77"],
  ["e!sc-b-241", "58"],
  ["e!sc-b-251", "67"],
  ["e!sc-b-26", "26"],
  ["e!sc-b-36", "35"],
  ["e!sc-b-4", "4"],
  ["e!sc-b-41", "37"],
  ["e!sc-b-44", "40"],
  ["e!sc-b-5", "5"],
  ["e!sc-b-61", "46"],
  ["e!sc-b-63", "48"],
  ["e!sc-b-71", "50"],
  ["e!sc-c-30", "33"],
  ["e!sc-c-9", "9"],
  [
    "ep!lab",
    '{"endpoint":null,"w":{"id":"sc-b-63","origin":"b","hlc":{"wall":63,"logical":0},"at":"1970-01-01T00:01:03.000Z","actor":"admin"}}',
  ],
  [
    "ep!onprem",
    '{"endpoint":{"name":"onprem","url":"https://onprem.example","credentialsFile":"/etc/meridian/onprem.creds","insecure":false},"w":{"id":"sc-b-61","origin":"b","hlc":{"wall":61,"logical":0},"at":"1970-01-01T00:01:01.000Z","actor":"admin"}}',
  ],
  [
    "g!ops!bob",
    '{"value":null,"w":{"id":"sc-b-26","origin":"b","hlc":{"wall":26,"logical":0},"at":"1970-01-01T00:00:26.000Z","actor":"admin"}}',
  ],
  [
    "g!team!alice",
    '{"value":{"role":"projectAdmin"},"w":{"id":"sc-a-24","origin":"a","hlc":{"wall":24,"logical":0},"at":"1970-01-01T00:00:24.000Z","actor":"admin"}}',
  ],
  [
    "gate!destination!b",
    '{"gates":{"signature":{"keys":["release"]}},"w":{"id":"sc-b-101","origin":"b","hlc":{"wall":101,"logical":0},"at":"1970-01-01T00:01:41.000Z","actor":"admin"}}',
  ],
  [
    "gate!project!prod",
    '{"gates":null,"w":{"id":"sc-a-103","origin":"a","hlc":{"wall":103,"logical":0},"at":"1970-01-01T00:01:43.000Z","actor":"admin"}}',
  ],
  [
    "gc!gc-sc",
    '{"runId":"gc-sc","region":"a","dryRun":false,"graceMs":0,"undeleteWindowMs":0,"trigger":"manual","actor":"admin","at":"1970-01-01T00:00:50.000Z","finished":{"outcome":"ok","stats":{"collected":1},"at":"1970-01-01T00:00:52.000Z"}}',
  ],
  [
    "h!team/app!c-tag!000000000000030.000000000!c!sc-c-30",
    '{"digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279","w":{"id":"sc-c-30","origin":"c","hlc":{"wall":30,"logical":0},"at":"1970-01-01T00:00:30.000Z","actor":"admin"},"via":"tag.set"}',
  ],
  [
    "h!team/app!hidden!000000000000031.000000000!a!sc-a-31",
    '{"digest":"sha256:9ba69afc04ec0016cd2dfa4bc2a1df7bba5de141d3397f85ef84c6cdd279471d","w":{"id":"sc-a-31","origin":"a","hlc":{"wall":31,"logical":0},"at":"1970-01-01T00:00:31.000Z","actor":"admin"},"via":"manifest.pushed"}',
  ],
  [
    "h!team/app!latest!000000000000005.000000000!b!sc-b-5",
    '{"digest":"sha256:2c16fc038f0b9b1dd37fdfd1ebc2fe2d1314eeffacb338a622e47f4e090bc1ff","w":{"id":"sc-b-5","origin":"b","hlc":{"wall":5,"logical":0},"at":"1970-01-01T00:00:05.000Z","actor":"admin"},"via":"tag.set"}',
  ],
  [
    "h!team/app!old!000000000000007.000000000!a!sc-a-7",
    '{"digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279","w":{"id":"sc-a-7","origin":"a","hlc":{"wall":7,"logical":0},"at":"1970-01-01T00:00:07.000Z","actor":"admin"},"via":"tag.set"}',
  ],
  [
    "h!team/app!old!000000000000008.000000000!a!sc-a-8",
    '{"digest":null,"w":{"id":"sc-a-8","origin":"a","hlc":{"wall":8,"logical":0},"at":"1970-01-01T00:00:08.000Z","actor":"admin"},"via":"tag.deleted"}',
  ],
  [
    "h!team/app!v1!000000000000003.000000000!a!sc-a-3",
    '{"digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279","w":{"id":"sc-a-3","origin":"a","hlc":{"wall":3,"logical":0},"at":"1970-01-01T00:00:03.000Z","actor":"admin"},"via":"manifest.pushed"}',
  ],
  [
    "j!team",
    '{"value":{"public":true},"w":{"id":"sc-a-23","origin":"a","hlc":{"wall":23,"logical":0},"at":"1970-01-01T00:00:23.000Z","actor":"admin"}}',
  ],
  ["m!schema", "4"],
  ["m!seq", "79"],
  ["o!c", "7"],
  [
    "os!olivia",
    '{"value":{"secretHash":"scrypt$10$8$1$c2FsdA$aGFzaAx","setAt":"1970-01-01T00:03:23.000Z"},"w":{"id":"sc-b-203","origin":"b","hlc":{"wall":203,"logical":0},"at":"1970-01-01T00:03:23.000Z","actor":"olivia"}}',
  ],
  [
    "os!oscar",
    '{"value":null,"w":{"id":"sc-a-205","origin":"a","hlc":{"wall":205,"logical":0},"at":"1970-01-01T00:03:25.000Z","actor":"admin"}}',
  ],
  [
    "ou!olivia",
    '{"value":{"issuer":"https://idp.example","subject":"s-1","groups":["team-dev"],"systemAdmin":false,"operator":false,"roles":{"team":"developer"},"session":null,"at":"1970-01-01T00:03:22.000Z"},"w":{"id":"sc-b-202","origin":"b","hlc":{"wall":202,"logical":0},"at":"1970-01-01T00:03:22.000Z","actor":"olivia"}}',
  ],
  [
    "pp!lab",
    '{"value":null,"w":{"id":"sc-a-253","origin":"a","hlc":{"wall":253,"logical":0},"at":"1970-01-01T00:04:13.000Z","actor":"admin"}}',
  ],
  [
    "pp!prod",
    '{"value":{"project":"prod","gates":{"signature":{"keys":["release","ops"]}},"exempt":{"systemAdmins":true,"robots":[]}},"w":{"id":"sc-b-251","origin":"b","hlc":{"wall":251,"logical":0},"at":"1970-01-01T00:04:11.000Z","actor":"admin"}}',
  ],
  [
    "pro!pr-00112233445566778899aabb",
    '{"record":{"promotionId":"pr-00112233445566778899aabb","source":{"region":"a","repository":"team/app","tag":"v1","digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279"},"destination":{"kind":"region","name":"b","repository":"prod/app","tag":"v1"},"gates":[{"gate":"signature","scope":"destination:b","ok":true,"reason":"signature: verified"}],"outcome":"passed"},"w":{"id":"sc-a-105","origin":"a","hlc":{"wall":105,"logical":0},"at":"1970-01-01T00:01:45.000Z","actor":"admin"}}',
  ],
  [
    "prt!prod/app!v1!000000000000104.000000000!sc-a-104",
    '{"record":{"promotionId":"pr-00112233445566778899aabb","source":{"region":"a","repository":"team/app","tag":"v1","digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279"},"destination":{"kind":"region","name":"b","repository":"prod/app","tag":"v1"},"gates":[{"gate":"signature","scope":"destination:b","ok":false,"reason":"signature: none found"}],"outcome":"failed"},"w":{"id":"sc-a-104","origin":"a","hlc":{"wall":104,"logical":0},"at":"1970-01-01T00:01:44.000Z","actor":"admin"}}',
  ],
  [
    "prt!prod/app!v1!000000000000105.000000000!sc-a-105",
    '{"record":{"promotionId":"pr-00112233445566778899aabb","source":{"region":"a","repository":"team/app","tag":"v1","digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279"},"destination":{"kind":"region","name":"b","repository":"prod/app","tag":"v1"},"gates":[{"gate":"signature","scope":"destination:b","ok":true,"reason":"signature: verified"}],"outcome":"passed"},"w":{"id":"sc-a-105","origin":"a","hlc":{"wall":105,"logical":0},"at":"1970-01-01T00:01:45.000Z","actor":"admin"}}',
  ],
  [
    "prt!team/app!v1!000000000000104.000000000!sc-a-104",
    '{"record":{"promotionId":"pr-00112233445566778899aabb","source":{"region":"a","repository":"team/app","tag":"v1","digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279"},"destination":{"kind":"region","name":"b","repository":"prod/app","tag":"v1"},"gates":[{"gate":"signature","scope":"destination:b","ok":false,"reason":"signature: none found"}],"outcome":"failed"},"w":{"id":"sc-a-104","origin":"a","hlc":{"wall":104,"logical":0},"at":"1970-01-01T00:01:44.000Z","actor":"admin"}}',
  ],
  [
    "prt!team/app!v1!000000000000105.000000000!sc-a-105",
    '{"record":{"promotionId":"pr-00112233445566778899aabb","source":{"region":"a","repository":"team/app","tag":"v1","digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279"},"destination":{"kind":"region","name":"b","repository":"prod/app","tag":"v1"},"gates":[{"gate":"signature","scope":"destination:b","ok":true,"reason":"signature: verified"}],"outcome":"passed"},"w":{"id":"sc-a-105","origin":"a","hlc":{"wall":105,"logical":0},"at":"1970-01-01T00:01:45.000Z","actor":"admin"}}',
  ],
  [
    "pull!team/app!sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279",
    '{"at":1714564800000}',
  ],
  [
    "px!hub",
    '{"proxy":{"project":"hub","endpoint":"onprem","upstreamPrefix":"library","freshnessSeconds":60},"w":{"id":"sc-b-121","origin":"b","hlc":{"wall":121,"logical":0},"at":"1970-01-01T00:02:01.000Z","actor":"admin"}}',
  ],
  [
    "px!old",
    '{"proxy":null,"w":{"id":"sc-b-123","origin":"b","hlc":{"wall":123,"logical":0},"at":"1970-01-01T00:02:03.000Z","actor":"admin"}}',
  ],
  ["qd!other!sha256:d66bb68b0694f5e8f359b835baf543f37e485ad48ac1137e7a4557d1fa08e55c", '{"n":0,"size":10}'],
  ["qd!team!sha256:0b57c4413b6fbb0498432b80919fce8f15158934c95d6650b6864dee6aebb2d7", '{"n":1,"size":50}'],
  ["qd!team!sha256:2c16fc038f0b9b1dd37fdfd1ebc2fe2d1314eeffacb338a622e47f4e090bc1ff", '{"n":1,"size":120}'],
  ["qd!team!sha256:9ba69afc04ec0016cd2dfa4bc2a1df7bba5de141d3397f85ef84c6cdd279471d", '{"n":0,"size":130}'],
  ["qd!team!sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279", '{"n":1,"size":100}'],
  ["qd!team!sha256:d66bb68b0694f5e8f359b835baf543f37e485ad48ac1137e7a4557d1fa08e55c", '{"n":1,"size":10}'],
  [
    "ql!team",
    '{"value":{"limitBytes":1000000},"w":{"id":"sc-a-33","origin":"a","hlc":{"wall":33,"logical":0},"at":"1970-01-01T00:00:33.000Z","actor":"admin"}}',
  ],
  ["qu!other", '{"usedBytes":0,"blobs":0,"reclaimableBytes":10}'],
  ["qu!team", '{"usedBytes":280,"blobs":4,"reclaimableBytes":130}'],
  ["qx!sha256:9ba69afc04ec0016cd2dfa4bc2a1df7bba5de141d3397f85ef84c6cdd279471d!team", ""],
  ["qx!sha256:d66bb68b0694f5e8f359b835baf543f37e485ad48ac1137e7a4557d1fa08e55c!other", ""],
  ["r!other/gone", "{}"],
  ["r!team/app", "{}"],
  [
    "ret!ci",
    '{"rule":{"name":"ci","repositories":["team/**"],"region":"a","keepLast":2},"w":{"id":"sc-b-41","origin":"b","hlc":{"wall":41,"logical":0},"at":"1970-01-01T00:00:41.000Z","actor":"admin"}}',
  ],
  [
    "ret!old",
    '{"rule":null,"w":{"id":"sc-a-43","origin":"a","hlc":{"wall":43,"logical":0},"at":"1970-01-01T00:00:43.000Z","actor":"admin"}}',
  ],
  [
    "t!team/app!c-tag",
    '{"digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279","hlc":{"wall":30,"logical":0},"origin":"c","eventId":"sc-c-30","seq":33,"at":"1970-01-01T00:00:30.000Z","actor":"admin"}',
  ],
  [
    "t!team/app!hidden",
    '{"digest":"sha256:9ba69afc04ec0016cd2dfa4bc2a1df7bba5de141d3397f85ef84c6cdd279471d","hlc":{"wall":31,"logical":0},"origin":"a","eventId":"sc-a-31","seq":30,"at":"1970-01-01T00:00:31.000Z","actor":"admin"}',
  ],
  [
    "t!team/app!latest",
    '{"digest":"sha256:2c16fc038f0b9b1dd37fdfd1ebc2fe2d1314eeffacb338a622e47f4e090bc1ff","hlc":{"wall":5,"logical":0},"origin":"b","eventId":"sc-b-5","seq":5,"at":"1970-01-01T00:00:05.000Z","actor":"admin"}',
  ],
  [
    "t!team/app!old",
    '{"digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279","hlc":{"wall":7,"logical":0},"origin":"a","eventId":"sc-a-7","seq":13,"at":"1970-01-01T00:00:07.000Z","actor":"admin"}',
  ],
  [
    "t!team/app!v1",
    '{"digest":"sha256:c79126217e170229cdd6b5361948d23e4d3eef8899ebe4e8e743ea0951f40279","hlc":{"wall":3,"logical":0},"origin":"a","eventId":"sc-a-3","seq":3,"at":"1970-01-01T00:00:03.000Z","actor":"admin"}',
  ],
  ["tr!alice", '{"before":1714608000000}'],
  ["tr!robot$ci", '{"before":1714694400000}'],
  [
    "u!alice",
    '{"value":{"passwordHash":"scrypt$10$8$1$c2FsdA$aGFzaA","systemAdmin":false},"w":{"id":"sc-a-21","origin":"a","hlc":{"wall":21,"logical":0},"at":"1970-01-01T00:00:21.000Z","actor":"admin"}}',
  ],
  [
    "u!bob",
    '{"value":null,"w":{"id":"sc-b-26","origin":"b","hlc":{"wall":26,"logical":0},"at":"1970-01-01T00:00:26.000Z","actor":"admin"}}',
  ],
  [
    "wh!*!siem",
    '{"subscription":{"name":"siem","url":"https://siem.example/in","project":"*","siem":true},"w":{"id":"sc-a-162","origin":"a","hlc":{"wall":162,"logical":0},"at":"1970-01-01T00:02:42.000Z","actor":"admin"}}',
  ],
  [
    "wh!team!ci",
    '{"subscription":{"name":"ci","url":"https://h.example/b","project":"team","events":["pushed"]},"w":{"id":"sc-b-71","origin":"b","hlc":{"wall":71,"logical":0},"at":"1970-01-01T00:01:11.000Z","actor":"admin"}}',
  ],
  [
    "wh!x!old",
    '{"subscription":null,"w":{"id":"sc-a-73","origin":"a","hlc":{"wall":73,"logical":0},"at":"1970-01-01T00:01:13.000Z","actor":"admin"}}',
  ],
  [
    "x!robot$ci",
    '{"value":{"secretHash":"scrypt$10$8$1$c2FsdA$aGFzaA","expiresAt":"2099-01-01T00:00:00.000Z","grants":[{"project":"team","repositories":"**","actions":["pull"]}]},"w":{"id":"sc-a-27","origin":"a","hlc":{"wall":27,"logical":0},"at":"1970-01-01T00:00:27.000Z","actor":"admin"}}',
  ],
  [
    "x!robot$old",
    '{"value":null,"w":{"id":"sc-a-29","origin":"a","hlc":{"wall":29,"logical":0},"at":"1970-01-01T00:00:29.000Z","actor":"admin"}}',
  ],
];
