//! Gateway transport compression: twilight-gateway is built with its `zstd` feature, so a node
//! asks the simulator for zstd-stream, handles events read through it, and the simulator
//! writes far fewer bytes than the same frames as JSON text.

use protonn_sim::GatewayEventKind;
use protonn_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reads_its_gateway_through_zstd_stream() {
    let bot = Bot::start(small_world(1, 6)).await;
    let (sim, recorder) = (&bot.sim, &bot.recorder);
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let chat = sim
        .send_message(guild.id, channel, guild.member_ids[0], "hello")
        .unwrap();
    sim.send_message(guild.id, channel, guild.owner_id, "!ping")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "pong");
    wait_until("the chat message is handled", || async {
        recorder.messages().contains_key(&chat)
    })
    .await;

    let asked: Vec<_> = sim
        .ledger()
        .gateway
        .iter()
        .filter(|record| record.kind == GatewayEventKind::Connected)
        .map(|record| record.compress)
        .collect();
    assert!(!asked.is_empty());
    assert!(
        asked
            .iter()
            .all(|compress| *compress == Some("zstd-stream")),
        "the simulator saw {asked:?}"
    );
    // The world's GUILD_CREATEs dominate what is written: zstd compresses them severalfold.
    let stats = sim.stats();
    assert!(stats.dispatches > 0);
    let per_dispatch = |bytes: u64| bytes as f64 / stats.dispatches as f64;
    let (wire, text) = (
        per_dispatch(stats.gateway_bytes),
        per_dispatch(stats.gateway_text_bytes),
    );
    assert!(
        wire * 3.0 < text,
        "{wire:.0} B per dispatch on the wire, {text:.0} B as JSON"
    );
    bot.stop().await;
}
