// B1/B2's discord.js peer: a bot written with discord.js 14 on its defaults (its caches on),
// pointed at the simulator's REST and gateway, with our bot's intents. It counts and does
// nothing else; the bench measures this process from the outside (/proc) as it measures the
// others. Prints `RSS <bytes>` before it connects and `ABSORBED` once every guild is in.
//
// node peer.js <rest_api_url> <token> <shards> <guilds> <intents>
const { Client } = require('discord.js');

const [api, token, shards, guilds, intents] = process.argv.slice(2);
const client = new Client({
  intents: Number(intents),
  rest: { api },
  shardCount: Number(shards),
});
let absorbed = false;
client.on('raw', () => {
  if (!absorbed && client.guilds.cache.size >= Number(guilds)) {
    absorbed = true;
    console.log('ABSORBED');
  }
});
client.on('error', (error) => console.error(`discord.js: ${error}`));
console.log(`RSS ${process.memoryUsage().rss}`);
client.login(token).catch((error) => {
  console.error(`login failed: ${error}`);
  process.exit(1);
});
