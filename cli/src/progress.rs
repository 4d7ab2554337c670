//! Progress for commands that wait (`rollout`, `up --wait`): one
//! `indicatif` bar per app when stdout is a terminal, plain lines when it
//! is not (a pipe, a log, a CI job), so what a script reads never holds
//! cursor movement.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;

pub enum Progress {
    Bars {
        multi: MultiProgress,
        bars: BTreeMap<String, ProgressBar>,
    },
    /// Plain lines; `changes` prints an app's new state when it moves.
    Plain {
        changes: bool,
        last: BTreeMap<String, String>,
    },
}

impl Progress {
    /// Bars on a terminal (unless `plain`), lines otherwise. `changes`:
    /// whether plain output prints each app's state as it moves (a
    /// command that already prints its own lines passes false).
    pub fn new(apps: &[String], plain: bool, changes: bool) -> Progress {
        if plain || !std::io::stdout().is_terminal() {
            return Progress::Plain {
                changes,
                last: BTreeMap::new(),
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let width = apps.iter().map(String::len).max().unwrap_or(0);
        let template = format!("{{prefix:<{width}}} [{{bar:30}}] {{pos}}/{{len}} {{msg}}");
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bars = apps
            .iter()
            .map(|app| {
                let bar = multi.add(ProgressBar::new(1).with_style(style.clone()));
                bar.set_prefix(app.clone());
                (app.clone(), bar)
            })
            .collect();
        Progress::Bars { multi, bars }
    }

    /// A line above the bars (or on its own).
    pub fn line(&self, text: &str) {
        match self {
            Progress::Bars { multi, .. } => {
                if multi.println(text).is_err() {
                    println!("{text}");
                }
            }
            Progress::Plain { .. } => println!("{text}"),
        }
    }

    /// `app` is at `pos` of `len`, with `msg`.
    pub fn set(&mut self, app: &str, pos: u64, len: u64, msg: &str) {
        match self {
            Progress::Bars { bars, .. } => {
                if let Some(bar) = bars.get(app) {
                    bar.set_length(len.max(1));
                    bar.set_position(pos.min(len));
                    bar.set_message(msg.to_string());
                }
            }
            Progress::Plain { changes, last } => {
                let now = format!("{app}: {pos}/{len} {msg}");
                if *changes && last.get(app) != Some(&now) {
                    println!("{}", now.trim_end());
                    last.insert(app.to_string(), now);
                }
            }
        }
    }

    /// Removes the bars; what was printed with [`Progress::line`] stays.
    pub fn finish(&self) {
        if let Progress::Bars { bars, .. } = self {
            for bar in bars.values() {
                bar.finish_and_clear();
            }
        }
    }
}

/// `step X/Y` in a rollout's status line (`1 -> 2, step 2/3 (surging)`).
pub fn rollout_step(status: &str) -> Option<(u64, u64)> {
    let rest = status.split("step ").nth(1)?;
    let (x, rest) = rest.split_once('/')?;
    let y: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((x.trim().parse().ok()?, y.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_line_gives_its_step() {
        assert_eq!(rollout_step("1 -> 2, step 2/3 (surging)"), Some((2, 3)));
        assert_eq!(rollout_step("1 -> 2, step 0/10 (draining)"), Some((0, 10)));
        assert_eq!(rollout_step("reverting"), None);
    }
}
