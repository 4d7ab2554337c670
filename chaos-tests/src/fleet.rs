//! A fleet of hosts on one machine: each host a network namespace with its
//! own address, joined by veth pairs to one bridge, as machines are to a
//! switch. The test process (the operator, the load) sits on the bridge
//! itself, at `.1`. Faults are what a switch does to a host: a cut between
//! two hosts (packets dropped silently, both ways), or a share of every
//! packet lost. They are nftables rules inside the host's namespace (this
//! kernel has no `netem`: loss is `numgen random`, latency is not
//! available), removed when healed. Everything is torn down on drop.
//!
//! Needs root and `ip` (iproute2) and `nft` (nftables), which `.ci/run`
//! installs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

pub struct Fleet {
    /// The third octet of this fleet's 10.77.X.0/24.
    subnet: u8,
    bridge: String,
    hosts: BTreeMap<String, Host>,
}

#[derive(Clone, Debug)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run ip/nft (install iproute2 and nftables)");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nft(ns: &str, script: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run nft (install nftables)");
    child
        .stdin
        .take()
        .expect("nft stdin")
        .write_all(script.as_bytes())
        .expect("write nft rules");
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft in {ns}: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Fleet {
    /// A bridge and an empty fleet on a subnet of its own (one per live
    /// fleet on this machine, so tests may run side by side).
    pub fn new() -> Fleet {
        use std::sync::atomic::{AtomicU8, Ordering};
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let subnet = 20 + ((std::process::id() as u8).wrapping_mul(7).wrapping_add(n) % 200);
        let bridge = format!("sk8b{subnet}");
        // Left over by a run that was killed: start clean.
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.77.{subnet}.1/24"),
            "dev",
            &bridge,
        ]);
        run(&["ip", "link", "set", &bridge, "up"]);
        Fleet {
            subnet,
            bridge,
            hosts: BTreeMap::new(),
        }
    }

    /// Host `name` (made on first use): its namespace and address.
    pub fn host(&mut self, name: &str) -> Host {
        if let Some(h) = self.hosts.get(name) {
            return h.clone();
        }
        let index = self.hosts.len() as u8;
        let ns = format!("sk8-{}-{name}", self.subnet);
        let ip = Ipv4Addr::new(10, 77, self.subnet, 10 + index);
        let (inside, outside) = (
            format!("s8v{}h{index}", self.subnet),
            format!("s8p{}h{index}", self.subnet),
        );
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &outside]).output();
        run(&["ip", "netns", "add", &ns]);
        run(&[
            "ip", "link", "add", &inside, "type", "veth", "peer", "name", &outside,
        ]);
        run(&["ip", "link", "set", &outside, "master", &self.bridge, "up"]);
        run(&["ip", "link", "set", &inside, "netns", &ns]);
        let exec = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &ns];
            all.extend_from_slice(args);
            run(&all);
        };
        exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &inside]);
        exec(&["ip", "link", "set", &inside, "up"]);
        exec(&["ip", "link", "set", "lo", "up"]);
        let host = Host { ns, ip };
        self.hosts.insert(name.to_string(), host.clone());
        host
    }

    /// `program` to run on host `name`.
    pub fn command(&mut self, name: &str, program: &std::path::Path) -> Command {
        let host = self.host(name);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.ns]).arg(program);
        cmd
    }

    fn get(&self, name: &str) -> &Host {
        self.hosts
            .get(name)
            .unwrap_or_else(|| panic!("no host {name} in the fleet"))
    }

    /// Cuts `a` off from each of `others`, both ways: their packets are
    /// dropped silently, as by a switch that lost the port. Everyone else
    /// still reaches `a`.
    pub fn cut(&self, a: &str, others: &[&str]) {
        let ips: Vec<String> = others.iter().map(|o| self.get(o).ip.to_string()).collect();
        let set = ips.join(", ");
        nft(
            &self.get(a).ns,
            &format!(
                "table inet sk8cut {{\n chain out {{\n type filter hook output priority 0;\n ip daddr {{ {set} }} drop\n }}\n chain in {{\n type filter hook input priority 0;\n ip saddr {{ {set} }} drop\n }}\n}}\n"
            ),
        );
    }

    /// Undoes every cut of `a`.
    pub fn heal(&self, a: &str) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.get(a).ns])
            .args(["nft", "delete", "table", "inet", "sk8cut"])
            .output();
    }

    /// Loses `percent` of the packets `a` sends and receives, at random.
    pub fn lossy(&self, a: &str, percent: u8) {
        nft(
            &self.get(a).ns,
            &format!(
                "table inet sk8loss {{\n chain out {{\n type filter hook output priority 0;\n oifname != \"lo\" numgen random mod 100 < {percent} counter drop\n }}\n chain in {{\n type filter hook input priority 0;\n iifname != \"lo\" numgen random mod 100 < {percent} counter drop\n }}\n}}\n"
            ),
        );
    }

    /// Packets `a`'s loss rules have dropped so far.
    pub fn lost_packets(&self, a: &str) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.get(a).ns])
            .args(["nft", "list", "table", "inet", "sk8loss"])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "packets")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum()
    }

    /// Ends `a`'s packet loss.
    pub fn lossless(&self, a: &str) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.get(a).ns])
            .args(["nft", "delete", "table", "inet", "sk8loss"])
            .output();
    }
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet::new()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for host in self.hosts.values() {
            let _ = Command::new("ip").args(["netns", "del", &host.ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}
