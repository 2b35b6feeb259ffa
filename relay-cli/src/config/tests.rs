//! Tests of the config file: the seed's snippets, the example, errors, overrides and the
//! conversions to relay-proto's settings.

use std::time::Duration;

use relay_proto::hop::{HookMode, RateLimit, RelayConfig};

use super::*;

/// The seed's `node.relay.transport` snippet, verbatim.
const SEED_TRANSPORT: &str = r#"
node:
  relay:
    transport:
      # 基础配置
      enabled: true               # 启用中继传输
      hop_timeout: "30s"          # 跳转超时
      max_hops: 3                 # 最大跳数
      
      # 连接配置
      dial_timeout: "60s"         # 拨号超时
      max_circuits_per_peer: 16   # 每个节点最大电路数
      
      # 性能配置
      stream_timeout: "1m"        # 流超时
      max_message_size: 65536     # 最大消息大小
"#;

/// The seed's `node.relay.service` snippet, verbatim.
const SEED_SERVICE: &str = r#"
node:
  relay:
    service:
      # 服务配置
      enabled: false              # 启用中继服务
      max_circuits: 1000          # 最大电路数
      max_circuit_duration: "2m"  # 最大电路持续时间
      max_circuit_bytes: 1048576  # 最大电路字节数
      
      # 资源限制
      max_reservations: 256       # 最大预约数
      max_reservations_per_peer: 4 # 每个节点最大预约数
      max_reservations_per_ip: 8  # 每个IP最大预约数
      max_reservations_per_asn: 32 # 每个ASN最大预约数
      
      # 缓冲配置
      buffer_size: 2048           # 缓冲区大小
      max_buffer_time: "10s"      # 最大缓冲时间
"#;

/// The seed's `node.relay.auto_relay` snippet, verbatim.
const SEED_AUTO_RELAY: &str = r#"
node:
  relay:
    auto_relay:
      # 基础配置
      enabled: false              # 启用自动中继
      static_relay_peers: []      # 静态中继节点列表
      
      # 动态配置
      enable_dynamic: true        # 启用动态中继
      max_relay_peers: 3          # 最大中继节点数
      min_relay_peers: 1          # 最小中继节点数
      
      # 选择策略
      selection_policy: "quality" # 选择策略: quality/random/round_robin
      quality_threshold: 0.8      # 质量阈值
      refresh_interval: "30m"     # 刷新间隔
      
      # 发现配置
      peer_source_timeout: "30s"  # 节点源超时
      discovery_timeout: "1m"     # 发现超时
"#;

/// The seed's `node.relay.hole_punch` snippet, verbatim.
const SEED_HOLE_PUNCH: &str = r#"
node:
  relay:
    hole_punch:
      # 基础配置
      enabled: true               # 启用打洞
      max_attempts: 3             # 最大尝试次数
      attempt_timeout: "5s"       # 尝试超时
      
      # 策略配置
      direct_dial_attempts: 3     # 直连尝试次数
      sync_timeout: "15s"         # 同步超时
      
      # 优化配置
      enable_tcp_hole_punch: true # 启用TCP打洞
      enable_dcutr: true          # 启用DCUTR协议
      concurrent_limit: 10        # 并发限制
"#;

/// The seed's `node.relay.monitoring` snippet, verbatim.
const SEED_MONITORING: &str = r#"
node:
  relay:
    monitoring:
      # 指标配置
      enable_metrics: true        # 启用指标收集
      metrics_interval: "1m"      # 指标收集间隔
      
      # 统计配置
      track_circuit_stats: true   # 跟踪电路统计
      track_bandwidth_stats: true # 跟踪带宽统计
      track_latency_stats: true   # 跟踪延迟统计
      
      # 告警配置
      circuit_limit_threshold: 0.9    # 电路限制阈值
      bandwidth_limit_threshold: 0.8  # 带宽限制阈值
      error_rate_threshold: 0.1       # 错误率阈值
"#;

fn parse(text: &str) -> FileConfig {
    FileConfig::from_yaml(text, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> String {
    match FileConfig::from_yaml(text, "test.yaml") {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => e.to_string(),
    }
}

fn secs(s: u64) -> GoDuration {
    GoDuration::from_secs(s)
}

#[test]
fn seed_transport_section_parses_to_the_documented_defaults() {
    let config = parse(SEED_TRANSPORT);
    let t = &config.node.relay.transport;
    assert!(t.enabled);
    assert_eq!(t.hop_timeout, secs(30));
    assert_eq!(t.max_hops, 3);
    assert_eq!(t.dial_timeout, secs(60));
    assert_eq!(t.max_circuits_per_peer, 16);
    assert_eq!(t.stream_timeout, secs(60));
    assert_eq!(t.max_message_size, 65536);
    assert_eq!(config, FileConfig::default());
}

#[test]
fn seed_service_section_parses_to_the_documented_defaults() {
    let config = parse(SEED_SERVICE);
    let s = &config.node.relay.service;
    assert!(!s.enabled);
    assert_eq!(s.max_circuits, 1000);
    assert_eq!(s.max_circuit_duration, secs(120));
    assert_eq!(s.max_circuit_bytes, 1_048_576);
    assert_eq!(s.max_reservations, 256);
    assert_eq!(s.max_reservations_per_peer, 4);
    assert_eq!(s.max_reservations_per_ip, 8);
    assert_eq!(s.max_reservations_per_asn, 32);
    assert_eq!(s.buffer_size, 2048);
    assert_eq!(s.max_buffer_time, secs(10));
    assert_eq!(config, FileConfig::default());
}

#[test]
fn seed_auto_relay_section_parses_to_the_documented_defaults() {
    let config = parse(SEED_AUTO_RELAY);
    let a = &config.node.relay.auto_relay;
    assert!(!a.enabled);
    assert!(a.static_relay_peers.is_empty());
    assert!(a.enable_dynamic);
    assert_eq!(a.max_relay_peers, 3);
    assert_eq!(a.min_relay_peers, 1);
    assert_eq!(a.selection_policy, SelectionPolicy::Quality);
    assert_eq!(a.quality_threshold, 0.8);
    assert_eq!(a.refresh_interval, secs(1800));
    assert_eq!(a.peer_source_timeout, secs(30));
    assert_eq!(a.discovery_timeout, secs(60));
    assert_eq!(config, FileConfig::default());
}

#[test]
fn seed_hole_punch_section_parses_to_the_documented_defaults() {
    let config = parse(SEED_HOLE_PUNCH);
    let h = &config.node.relay.hole_punch;
    assert!(h.enabled);
    assert_eq!(h.max_attempts, 3);
    assert_eq!(h.attempt_timeout, secs(5));
    assert_eq!(h.direct_dial_attempts, 3);
    assert_eq!(h.sync_timeout, secs(15));
    assert!(h.enable_tcp_hole_punch);
    assert!(h.enable_dcutr);
    assert_eq!(h.concurrent_limit, 10);
    assert_eq!(config, FileConfig::default());
}

#[test]
fn seed_monitoring_section_parses_to_the_documented_defaults() {
    let config = parse(SEED_MONITORING);
    let m = &config.node.relay.monitoring;
    assert!(m.enable_metrics);
    assert_eq!(m.metrics_interval, secs(60));
    assert!(m.track_circuit_stats && m.track_bandwidth_stats && m.track_latency_stats);
    assert_eq!(m.circuit_limit_threshold, 0.9);
    assert_eq!(m.bandwidth_limit_threshold, 0.8);
    assert_eq!(m.error_rate_threshold, 0.1);
    assert_eq!(m.metrics_listen, None);
    assert_eq!(m.bandwidth_capacity, 0);
    assert_eq!(config, FileConfig::default());
}

#[test]
fn all_seed_sections_together_are_the_defaults() {
    // The five snippets merged under one `node.relay`.
    let mut merged = String::from("node:\n  relay:\n");
    for snippet in [
        SEED_TRANSPORT,
        SEED_SERVICE,
        SEED_AUTO_RELAY,
        SEED_HOLE_PUNCH,
        SEED_MONITORING,
    ] {
        let body = snippet
            .split_once("  relay:\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        merged.push_str(body);
    }
    assert_eq!(parse(&merged), FileConfig::default());
}

#[test]
fn the_example_file_is_the_serve_default_and_valid() {
    let example = parse(EXAMPLE_YAML);
    assert_eq!(example, FileConfig::serve_default());
    assert!(example.node.relay.service.enabled);
    assert!(!FileConfig::default().node.relay.service.enabled);
    assert_eq!(
        FileConfig::serve_default()
            .validate()
            .map_err(|e| e.to_string()),
        Ok(())
    );
}

#[test]
fn the_example_file_names_every_field() {
    // Every field the serializer writes appears in the example, so a new field cannot
    // go undocumented.
    let full = FileConfig::serve_default().to_yaml().unwrap();
    let mut missing = Vec::new();
    for line in full.lines() {
        let key = line.trim_start().trim_start_matches("- ");
        let Some((key, _)) = key.split_once(':') else {
            continue;
        };
        if key.starts_with('/') {
            continue;
        }
        let needle = format!("{key}:");
        if !EXAMPLE_YAML.contains(&needle) {
            missing.push(key.to_owned());
        }
    }
    assert!(missing.is_empty(), "not in the example: {missing:?}");
}

#[test]
fn every_config_in_the_config_folder_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
            config.relay_config().unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 3, "only {seen} example configs");
}

#[test]
fn defaults_match_relay_proto() {
    assert_eq!(
        FileConfig::default().relay_config().unwrap(),
        RelayConfig::default()
    );
    let node = FileConfig::default().node_config();
    let proto = relay_proto::node::Config::default();
    assert_eq!(node.max_connections, proto.max_connections);
    assert_eq!(
        node.connection.upgrade_timeout,
        proto.connection.upgrade_timeout
    );
    assert_eq!(
        node.connection.yamux.max_streams,
        proto.connection.yamux.max_streams
    );
    assert_eq!(node.ping.interval, proto.ping.interval);
    assert_eq!(node.ping.timeout, proto.ping.timeout);
    assert_eq!(node.agent_version, proto.agent_version);
    assert_eq!(
        FileConfig::default().node.listen,
        vec!["/ip4/0.0.0.0/tcp/4001".parse::<Multiaddr>().unwrap()]
    );
}

#[test]
fn empty_documents_and_empty_sections_are_the_defaults() {
    assert_eq!(parse(""), FileConfig::default());
    assert_eq!(parse("# nothing but a comment\n"), FileConfig::default());
    assert_eq!(parse("node:\n"), FileConfig::default());
    assert_eq!(
        parse("node:\n  relay:\n    auto_relay:\n    service:\n"),
        FileConfig::default()
    );
    assert_eq!(
        parse("node:\n  relay:\n    service:\n      acl:\n        allow_peers:\n"),
        FileConfig::default()
    );
}

#[test]
fn unknown_fields_name_their_path_file_and_line() {
    let text = "node:\n  relay:\n    service:\n      enabled: true\n      max_circuit: 5\n";
    let message = error(text);
    assert!(message.starts_with("test.yaml:5:"), "{message}");
    assert!(message.contains("node.relay.service"), "{message}");
    assert!(message.contains("unknown field `max_circuit`"), "{message}");
    assert!(
        message.contains("max_circuits"),
        "suggests the fields: {message}"
    );

    let message = error("node:\n  relay:\n    transprt:\n      enabled: true\n");
    assert!(message.contains("unknown field `transprt`"), "{message}");
    assert!(message.contains("node.relay"), "{message}");
    let message = error("nodes: {}\n");
    assert!(message.contains("unknown field `nodes`"), "{message}");
    let message = error(
        "node:\n  relay:\n    service:\n      rate_limits:\n        circuits_per_ip: { burst: 1, refil: 1s }\n",
    );
    assert!(message.contains("unknown field `refil`"), "{message}");
    assert!(message.starts_with("test.yaml:5:"), "{message}");
}

#[test]
fn wrong_types_and_values_are_clear() {
    let cases: &[(&str, &[&str])] = &[
        (
            "node:\n  relay:\n    service:\n      max_circuits: -1\n",
            &["test.yaml:4:", "node.relay.service.max_circuits", "-1"],
        ),
        (
            "node:\n  relay:\n    transport:\n      hop_timeout: 30\n",
            &["test.yaml:4:", "hop_timeout", "no unit"],
        ),
        (
            "node:\n  relay:\n    transport:\n      hop_timeout: \"-5s\"\n",
            &["hop_timeout", "negative"],
        ),
        (
            "node:\n  relay:\n    transport:\n      dial_timeout: 3d\n",
            &["dial_timeout", "unknown unit \"d\""],
        ),
        (
            "node:\n  relay:\n    auto_relay:\n      selection_policy: best\n",
            &["test.yaml:4:", "unknown variant `best`", "round_robin"],
        ),
        (
            "node:\n  relay:\n    service:\n      acl:\n        deny_cidrs: [10.0.0.0/8, 10.0.0.0/33]\n",
            &[
                "test.yaml:5:",
                "deny_cidrs",
                "10.0.0.0/33",
                "prefix length 33",
            ],
        ),
        (
            "node:\n  relay:\n    service:\n      acl:\n        allow_peers: [not-a-peer]\n",
            &["test.yaml:5:", "allow_peers", "not-a-peer"],
        ),
        (
            "node:\n  relay:\n    service:\n      acl:\n        hook: sometimes\n",
            &["unknown variant `sometimes`", "reservations"],
        ),
        (
            "node:\n  listen: [/ip4/1.2.3.4/tcpx/1]\n",
            &["test.yaml:2:", "node.listen", "tcpx"],
        ),
        ("node: [1, 2]\n", &["test.yaml:1:", "node"]),
        (
            "node:\n  relay: {\n",
            &["test.yaml:3:1: did not find expected node content, while parsing"],
        ),
        (
            "node:\n  relay:\n    service:\n      rate_limits:\n        circuits_per_ip: { burst: 4 }\n",
            &["missing field `refill`"],
        ),
    ];
    for (text, needles) in cases {
        let message = error(text);
        for needle in *needles {
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
    }
}

#[test]
fn validation_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "node:\n  relay:\n    auto_relay:\n      min_relay_peers: 5\n",
            "test.yaml: node.relay.auto_relay.min_relay_peers: 5 is greater than max_relay_peers (3)",
        ),
        (
            "node:\n  relay:\n    auto_relay:\n      quality_threshold: 1.5\n",
            "test.yaml: node.relay.auto_relay.quality_threshold: 1.5 is not a share from 0 to 1",
        ),
        (
            "node:\n  relay:\n    auto_relay:\n      quality_threshold: .nan\n",
            "test.yaml: node.relay.auto_relay.quality_threshold: NaN is not a share from 0 to 1",
        ),
        (
            "node:\n  relay:\n    monitoring:\n      error_rate_threshold: -0.1\n",
            "test.yaml: node.relay.monitoring.error_rate_threshold: -0.1 is not a share from 0 to 1",
        ),
        (
            "node:\n  relay:\n    auto_relay:\n      max_relay_peers: 0\n      min_relay_peers: 0\n",
            "test.yaml: node.relay.auto_relay.max_relay_peers: must be at least 1",
        ),
        (
            "node:\n  relay:\n    hole_punch:\n      max_attempts: 0\n",
            "test.yaml: node.relay.hole_punch.max_attempts: must be at least 1",
        ),
        (
            "node:\n  relay:\n    hole_punch:\n      sync_timeout: 0s\n",
            "test.yaml: node.relay.hole_punch.sync_timeout: must be longer than zero, e.g. \"30s\"",
        ),
        (
            "node:\n  relay:\n    service:\n      reservation_ttl: 0\n",
            "test.yaml: node.relay.service.reservation_ttl: must not be zero",
        ),
        (
            "node:\n  relay:\n    service:\n      ipv6_prefix_len: 129\n",
            "test.yaml: node.relay.service.ipv6_prefix_len: 129 is above 128",
        ),
        (
            "node:\n  relay:\n    service:\n      max_circuit_duration: 9000h\n",
            "test.yaml: node.relay.service.max_circuit_duration: is longer than one year",
        ),
        (
            "node:\n  relay:\n    service:\n      rate_limits:\n        circuits_per_ip: { burst: 4294967295, refill: 1s }\n",
            "test.yaml: node.relay.service.rate_limits.circuits_per_ip: is longer than one year",
        ),
        (
            "node:\n  relay:\n    transport:\n      hop_timeout: 9000h\n",
            "test.yaml: node.relay.transport.hop_timeout: is longer than one year",
        ),
        (
            "node:\n  relay:\n    transport:\n      dial_timeout: 9000h\n",
            "test.yaml: node.relay.transport.dial_timeout: 9000h is longer than one year",
        ),
        (
            "node:\n  relay:\n    service:\n      buffer_size: 0\n",
            "test.yaml: node.relay.service.buffer_size: must be at least 1",
        ),
        (
            "node:\n  relay:\n    service:\n      acl:\n        hook: both\n",
            "test.yaml: node.relay.service.acl.hook: asks a decision hook but acl.hook_command is empty; `relay serve` answers the hook by running that program",
        ),
        (
            "node:\n  relay:\n    service:\n      acl:\n        hook_command: [/bin/true]\n",
            "test.yaml: node.relay.service.acl.hook_command: is set but acl.hook is `off`; set acl.hook to reservations, circuits or both, or remove the command",
        ),
        (
            "node:\n  relay:\n    service:\n      acl:\n        hook: circuits\n        hook_command: ['']\n",
            "test.yaml: node.relay.service.acl.hook_command: names an empty program",
        ),
        (
            "node:\n  listen: []\n",
            "test.yaml: node.listen: needs at least one address, e.g. /ip4/0.0.0.0/tcp/4001",
        ),
        (
            "node:\n  relay:\n    auto_relay:\n      static_relay_peers: [/ip4/1.2.3.4/tcp/4001]\n",
            "test.yaml: node.relay.auto_relay.static_relay_peers[0]: /ip4/1.2.3.4/tcp/4001 must end with /p2p/<relay peer id>",
        ),
        (
            "node:\n  relay:\n    auto_relay:\n      enabled: true\n      enable_dynamic: false\n",
            "test.yaml: node.relay.auto_relay: is enabled with enable_dynamic false and no static_relay_peers: it has no relay to choose from",
        ),
        (
            "node:\n  relay:\n    monitoring:\n      metrics_listen: localhost\n",
            "test.yaml: node.relay.monitoring.metrics_listen: \"localhost\" is not HOST:PORT, e.g. 127.0.0.1:9090",
        ),
        (
            "node:\n  relay:\n    monitoring:\n      metrics_listen: \"::1:9090\"\n",
            "test.yaml: node.relay.monitoring.metrics_listen: \"::1:9090\": write an IPv6 host in brackets, e.g. [::1]:9090",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&error(text), expected, "{text}");
    }
}

#[test]
fn extra_service_fields_convert_to_the_relay_config() {
    let peer = relay_proto::identity::keypair_from_seed(7)
        .public()
        .to_peer_id();
    let other = relay_proto::identity::keypair_from_seed(8)
        .public()
        .to_peer_id();
    let text = format!(
        "node:
  relay:
    transport:
      hop_timeout: 20s
      max_circuits_per_peer: 4
      stream_timeout: 500ms
      max_message_size: 1024
    service:
      enabled: true
      max_circuits: 10
      max_circuit_duration: 1h30m
      max_circuit_bytes: 0
      max_reservations: 2
      max_reservations_per_peer: 1
      max_reservations_per_ip: 3
      max_reservations_per_asn: 5
      buffer_size: 4096
      max_buffer_time: 2s
      reservation_ttl: 15m
      ipv6_prefix_len: 56
      max_pending_asks: 7
      rate_limits:
        reservations_per_peer: {{ burst: 1, refill: 1m }}
        reservations_per_ip: {{ burst: 0, refill: 0 }}
        circuits_per_peer: {{ burst: 2, refill: 1.5s }}
        circuits_per_ip: {{ burst: 3, refill: 100ms }}
        max_tracked_keys: 99
      acl:
        allow_peers: [{peer}]
        deny_peers: [{other}]
        allow_cidrs: [10.0.0.0/8, '2001:db8::/32']
        deny_cidrs: [10.1.2.3]
        hook: both
        hook_command: [/usr/local/bin/relay-acl, --strict]
      abuse:
        refusals: {{ burst: 5, refill: 3s }}
        ban: 1h
"
    );
    let relay = parse(&text).relay_config().unwrap();
    let expected = RelayConfig {
        max_circuits: 10,
        max_circuit_duration: Duration::from_secs(5400),
        max_circuit_bytes: 0,
        max_reservations: 2,
        max_reservations_per_peer: 1,
        max_reservations_per_ip: 3,
        max_reservations_per_asn: 5,
        buffer_size: 4096,
        max_buffer_time: Duration::from_secs(2),
        hop_timeout: Duration::from_secs(20),
        max_circuits_per_peer: 4,
        stream_timeout: Duration::from_millis(500),
        max_message_size: 1024,
        reservation_ttl: Duration::from_secs(900),
        ipv6_prefix_len: 56,
        rate: relay_proto::hop::RateLimits {
            reservations_per_peer: RateLimit::new(1, Duration::from_secs(60)),
            reservations_per_ip: RateLimit::OFF,
            circuits_per_peer: RateLimit::new(2, Duration::from_millis(1500)),
            circuits_per_ip: RateLimit::new(3, Duration::from_millis(100)),
            max_tracked_keys: 99,
        },
        acl: relay_proto::hop::AclConfig {
            allow_peers: vec![peer],
            deny_peers: vec![other],
            allow_cidrs: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            deny_cidrs: vec!["10.1.2.3/32".parse().unwrap()],
            hook: HookMode::Both,
        },
        abuse: relay_proto::hop::AbuseConfig {
            refusals: RateLimit::new(5, Duration::from_secs(3)),
            ban: Duration::from_secs(3600),
        },
        max_pending_asks: 7,
    };
    assert_eq!(relay, expected);
    assert!(relay_proto::hop::RelayPolicy::new(relay).is_ok());
}

#[test]
fn hook_settings_map_to_hook_modes() {
    for (text, mode) in [
        ("off", HookMode::Off),
        ("reservations", HookMode::Reservations),
        ("circuits", HookMode::Circuits),
        ("both", HookMode::Both),
    ] {
        let command = if mode == HookMode::Off {
            "[]"
        } else {
            "[/bin/true]"
        };
        let config = parse(&format!(
            "node:\n  relay:\n    service:\n      acl:\n        hook: {text}\n        hook_command: {command}\n"
        ));
        assert_eq!(config.relay_config().unwrap().acl.hook, mode);
    }
}

#[test]
fn overrides_replace_the_file() {
    let mut config = FileConfig::serve_default();
    config.apply(ServeOverrides {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        key_file: Some("key.bin".into()),
        max_reservations: Some(3),
        max_reservations_per_peer: Some(2),
        max_circuits: Some(5),
        max_circuit_bytes: Some(100),
        max_circuit_duration: Some(Duration::from_secs(7)),
        unlimited: false,
        metrics: Some("127.0.0.1:9000".into()),
    });
    let relay = config.relay_config().unwrap();
    assert_eq!(relay.max_reservations, 3);
    assert_eq!(relay.max_reservations_per_peer, 2);
    assert_eq!(relay.max_circuits, 5);
    assert_eq!(relay.max_circuit_bytes, 100);
    assert_eq!(relay.max_circuit_duration, Duration::from_secs(7));
    assert_eq!(config.node.key_file.as_deref(), Some(Path::new("key.bin")));
    assert_eq!(
        config.node.listen,
        vec!["/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>().unwrap()]
    );
    assert_eq!(config.metrics_listen(), Some("127.0.0.1:9000"));

    // No flags: nothing changes.
    let mut untouched = FileConfig::serve_default();
    untouched.apply(ServeOverrides::default());
    assert_eq!(untouched, FileConfig::serve_default());
    assert_eq!(untouched.metrics_listen(), None);
}

#[test]
fn metrics_flag_turns_metrics_on() {
    let mut config = parse(
        "node:\n  relay:\n    monitoring:\n      enable_metrics: false\n      metrics_listen: 127.0.0.1:1\n",
    );
    assert_eq!(config.metrics_listen(), None);
    config.apply(ServeOverrides {
        metrics: Some("[::1]:9090".into()),
        ..ServeOverrides::default()
    });
    assert_eq!(config.metrics_listen(), Some("[::1]:9090"));
    assert!(config.validate().is_ok());
}

#[test]
fn unlimited_lifts_limits_and_explicit_flags_still_apply() {
    let mut config = FileConfig::serve_default();
    config.apply(ServeOverrides {
        unlimited: true,
        max_circuits: Some(10),
        ..ServeOverrides::default()
    });
    let relay = config.relay_config().unwrap();
    assert_eq!(relay.max_circuit_bytes, 0);
    assert_eq!(relay.max_circuit_duration, Duration::ZERO);
    assert_eq!(relay.max_circuits, 10);
    assert_eq!(relay.max_circuits_per_peer, 0);
    assert_eq!(relay.max_reservations, 0);
    assert_eq!(relay.max_reservations_per_ip, 0);
    assert_eq!(relay.max_reservations_per_asn, 0);
    assert!(relay.rate.circuits_per_ip.is_off());
    assert!(relay.rate.reservations_per_peer.is_off());
    assert_eq!(relay.abuse.ban, Duration::ZERO);
    assert_eq!(relay.reservation_ttl, Duration::from_secs(3600));
}

#[test]
fn overrides_are_validated_by_the_conversion() {
    let mut config = FileConfig::serve_default();
    config.apply(ServeOverrides {
        max_circuit_duration: Some(Duration::from_secs(400 * 24 * 3600)),
        ..ServeOverrides::default()
    });
    assert_eq!(
        config.relay_config().unwrap_err().to_string(),
        "node.relay.service.max_circuit_duration: is longer than one year"
    );
}

#[test]
fn node_config_takes_the_node_settings() {
    let config = parse(
        "node:\n  max_connections: 10\n  upgrade_timeout: 3s\n  ping_interval: 0\n  ping_timeout: 1s\n  max_streams: 64\n",
    );
    let node = config.node_config();
    assert_eq!(node.max_connections, 10);
    assert_eq!(node.connection.upgrade_timeout, Duration::from_secs(3));
    assert_eq!(node.ping.interval, None);
    assert_eq!(node.ping.timeout, Duration::from_secs(1));
    assert_eq!(node.connection.yamux.max_streams, 64);
}

/// A fresh scratch directory in the system's temporary directory, unique per test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relay-cli-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn load_names_the_file_in_every_error() {
    let dir = scratch("load");
    let missing = dir.join("missing.yaml");
    let message = load(&missing).unwrap_err().to_string();
    assert!(message.starts_with("cannot read config file "), "{message}");
    assert!(message.contains("missing.yaml"), "{message}");

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "node:\n  relay:\n    service:\n      enabld: true\n").unwrap();
    let message = load(&bad).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}:4:7: ", bad.display())),
        "{message}"
    );
    assert!(message.contains("unknown field `enabld`"), "{message}");

    let invalid = dir.join("invalid.yaml");
    std::fs::write(
        &invalid,
        "node:\n  relay:\n    hole_punch:\n      concurrent_limit: 0\n",
    )
    .unwrap();
    assert_eq!(
        load(&invalid).unwrap_err().to_string(),
        format!(
            "{}: node.relay.hole_punch.concurrent_limit: must be at least 1",
            invalid.display()
        )
    );

    let binary = dir.join("binary.yaml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let message = load(&binary).unwrap_err().to_string();
    assert!(message.contains("binary.yaml"), "{message}");

    let message = load(&dir).unwrap_err().to_string();
    assert!(message.starts_with("cannot read config file "), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn asn_table_is_loaded_relative_to_the_config_file() {
    let dir = scratch("asn");
    std::fs::write(
        dir.join("ip2asn.tsv"),
        "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n2001:200::\t2001:200:ffff::\t2500\tJP\tWIDE\n",
    )
    .unwrap();
    let path = dir.join("relay.yaml");
    std::fs::write(
        &path,
        "node:\n  key_file: keys/node.key\n  relay:\n    service:\n      asn_table: ip2asn.tsv\n",
    )
    .unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.node.key_file, Some(dir.join("keys/node.key")));
    let table = config.asn_table().unwrap().unwrap();
    assert_eq!(table.lookup("1.0.0.1".parse().unwrap()), Some(13335));
    assert_eq!(table.len(), 2);
    let policy = config.relay_policy().unwrap();
    assert!(policy.asn_table().is_some());
    assert!(FileConfig::default().asn_table().unwrap().is_none());

    std::fs::write(
        dir.join("ip2asn.tsv"),
        "# header\n1.0.0.0\t1.0.0.255\t13335\n1.0.1.0\tnope\t7\n",
    )
    .unwrap();
    let message = config.relay_policy().unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "node.relay.service.asn_table: {}: ip2asn line 3: invalid IP address \"nope\"",
            dir.join("ip2asn.tsv").display()
        )
    );

    std::fs::remove_file(dir.join("ip2asn.tsv")).unwrap();
    let message = config.asn_table().unwrap_err().to_string();
    assert!(
        message.starts_with("node.relay.service.asn_table: cannot read "),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn yaml_round_trips() {
    let mut config = FileConfig::serve_default();
    config.node.relay.service.acl.deny_cidrs = vec!["192.168.0.0/16".parse().unwrap()];
    config.node.relay.auto_relay.static_relay_peers = vec![
        format!(
            "/ip4/203.0.113.7/tcp/4001/p2p/{}",
            relay_proto::identity::keypair_from_seed(1)
                .public()
                .to_peer_id()
        )
        .parse()
        .unwrap(),
    ];
    config.node.relay.auto_relay.selection_policy = SelectionPolicy::RoundRobin;
    config.node.relay.transport.stream_timeout = Duration::from_millis(1500).into();
    let text = config.to_yaml().unwrap();
    assert!(text.contains("selection_policy: round_robin"), "{text}");
    assert!(text.contains("stream_timeout: 1.5s"), "{text}");
    assert_eq!(parse(&text), config);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn random_yaml_never_panics(text in "[a-z_:{}\\[\\], \n\"'0-9.#/-]{0,300}") {
        if let Ok(config) = FileConfig::parse(&text, "fuzz") {
            let _ = config.validate();
            let _ = config.relay_config();
            let _ = config.node_config();
            let _ = config.to_yaml();
        }
    }

    #[test]
    fn mutated_example_never_panics(
        cut in 0usize..8000,
        at in 0usize..8000,
        insert in "[a-z_:{}\\[\\], \n\"'0-9.#/-]{0,12}",
    ) {
        let mut text = EXAMPLE_YAML.to_owned();
        let at = floor_char_boundary(&text, at.min(text.len()));
        text.insert_str(at, &insert);
        let cut = floor_char_boundary(&text, cut.min(text.len()));
        text.truncate(cut.max(at));
        if let Ok(config) = FileConfig::from_yaml(&text, "fuzz") {
            let _ = config.relay_config();
            let _ = config.node_config();
        }
    }

    #[test]
    fn mutated_fields_never_panic(
        field in proptest::sample::select(vec![
            "hop_timeout", "max_hops", "max_circuits", "max_circuit_bytes", "buffer_size",
            "quality_threshold", "min_relay_peers", "max_attempts", "ban", "refill", "burst",
            "ipv6_prefix_len", "selection_policy", "hook", "allow_cidrs", "listen",
        ]),
        value in "(-?[0-9]{1,25}(\\.[0-9]{0,3})?[a-z]{0,2}|\\[[a-z0-9./:]{0,20}\\]|[a-z_]{0,12}|\"\")",
    ) {
        let text: String = EXAMPLE_YAML
            .lines()
            .map(|line| {
                let key = line.trim_start();
                if key.starts_with(&format!("{field}:")) {
                    let indent = &line[..line.len() - key.len()];
                    format!("{indent}{field}: {value}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        if let Ok(config) = FileConfig::from_yaml(&text, "fuzz") {
            let _ = config.relay_config();
            let _ = config.node_config();
        }
    }
}

/// The largest char boundary at or below `at`.
fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[test]
fn hole_punch_section_maps_onto_the_node() {
    use relay_proto::dcutr::HolePunchConfig;
    let config = parse(
        "node:\n  relay:\n    hole_punch:\n      enabled: false\n      max_attempts: 2\n      \
         attempt_timeout: 3s\n      direct_dial_attempts: 1\n      sync_timeout: 9s\n      \
         enable_tcp_hole_punch: false\n      enable_dcutr: false\n      concurrent_limit: 4\n      \
         allow_private_addrs: true\n      allow_loopback_addrs: true\n      \
         relayed_close_grace: 2s\n",
    );
    assert_eq!(
        config.node_config().hole_punch,
        HolePunchConfig {
            enabled: false,
            max_attempts: 2,
            attempt_timeout: Duration::from_secs(3),
            direct_dial_attempts: 1,
            sync_timeout: Duration::from_secs(9),
            enable_tcp_hole_punch: false,
            enable_dcutr: false,
            concurrent_limit: 4,
            allow_private_addrs: true,
            allow_loopback_addrs: true,
            relayed_close_grace: Duration::from_secs(2),
            ..HolePunchConfig::default()
        }
    );
    assert_eq!(
        FileConfig::default().node_config().hole_punch,
        HolePunchConfig::default()
    );
}
