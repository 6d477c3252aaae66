//! Publishing refuses what would strand a device or leak a secret, with the reason, and stores
//! nothing: device settings or a Wi-Fi password in the image, another project's CA, another
//! host/port/path/channel, a synthetic build on a real channel, a version that contradicts the
//! image's. And a baked password never leaves through the update endpoint.

use crate::support::{Project, otaforge, run};
use otaforge_actions::publish::{self as publish, PublishRequest};
use otaforge_firmware::config_block::{self, BakedSettings};
use otaforge_firmware::settings::{BakeForm, baked_settings};
use otaforge_firmware::{Chip, ImageBuilder};
use otaforge_protocol::endpoint::Endpoint;
use otaforge_sim::device::reference_image;
use otaforge_store::Store;

const PASSWORD: &str = "hunter2-correct-horse";

/// A real firmware stand-in (not synthetic): an Arduino ESP8266 image with a config block.
fn real_image(version: &str) -> Vec<u8> {
    let mut image = ImageBuilder::arduino_esp8266().target_size(96 * 1024).version(version).build();
    config_block::reserve(&mut image).unwrap();
    image
}

fn fleet_settings(project: &Project, version: &str) -> BakedSettings {
    let form = BakeForm { host: "ota.test".into(), version: version.into(), ..BakeForm::default() };
    baked_settings(project.path(), &form, true).unwrap()
}

/// Bakes settings holding [`PASSWORD`], as `bake --sketch … --wifi-password-file` does.
fn bake_a_password(project: &Project) {
    let form = BakeForm {
        host: "ota.test".into(),
        version: "1.0.0".into(),
        wifi_password: PASSWORD.into(),
        ..BakeForm::default()
    };
    baked_settings(project.path(), &form, true).unwrap();
}

fn bake(image: &[u8], s: &BakedSettings) -> Vec<u8> {
    config_block::bake(image, s).unwrap()
}

/// Publishing `bytes` fails with a message containing every one of `words`, and stores nothing.
fn refused(project: &Project, bytes: &[u8], version: Option<&str>, channel: &str, words: &[&str]) {
    let mut store = Store::open(project.path()).unwrap();
    let err =
        publish::check_and_publish(&mut store, bytes.to_vec(), PublishRequest::sketch(channel, version))
            .expect_err("the publish must be refused");
    let text = err.to_string();
    for w in words {
        assert!(text.contains(w), "{w:?} missing from: {text}");
    }
    assert!(store.releases(None).unwrap().is_empty(), "a refused publish stored something");
}

#[test]
fn a_block_holding_device_settings_or_a_password_is_refused() {
    let project = Project::new();
    let mut s = fleet_settings(&project, "1.0.0");
    s.device_name = "kitchen".into();
    refused(
        &project,
        &bake(&real_image("1.0.0"), &s),
        None,
        "stable",
        &["device name \"kitchen\"", "provision"],
    );
    let mut s = fleet_settings(&project, "1.0.0");
    s.wifi_ssid = "home".into();
    s.wifi_password = PASSWORD.into();
    let image = bake(&real_image("1.0.0"), &s);
    refused(&project, &image, None, "stable", &["Wi-Fi network \"home\"", "a Wi-Fi password"]);
    // The message names the settings, never the password.
    let mut store = Store::open(project.path()).unwrap();
    let err = publish::check_and_publish(&mut store, image.to_vec(), PublishRequest::sketch("stable", None))
        .unwrap_err();
    assert!(!err.to_string().contains(PASSWORD));
}

#[test]
fn an_image_containing_a_password_this_project_baked_is_refused() {
    let project = Project::new();
    // Baking with a password (as `bake --sketch … --wifi-password-file` does) keeps its hash only.
    bake_a_password(&project);
    let files: Vec<u8> = std::fs::read_dir(project.path())
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .flatten()
        .collect();
    assert!(
        !files.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()),
        "the password is kept in clear"
    );
    // An ota_config.h build: the password sits in the image's read-only data.
    let mut rodata = vec![0u8; 4096];
    rodata[100..100 + PASSWORD.len()].copy_from_slice(PASSWORD.as_bytes());
    let image = ImageBuilder::arduino_esp8266().segments([(0x4020_1000, rodata)]).build();
    refused(&project, &image, Some("1.0.0"), "stable", &["Wi-Fi password baked in this project"]);
}

#[test]
fn another_projects_ca_host_port_path_or_channel_is_refused() {
    let project = Project::new();
    let other = Project::new();
    let theirs = bake(&real_image("1.0.0"), &fleet_settings(&other, "1.0.0"));
    refused(&project, &theirs, None, "stable", &["trusts another CA", "never update again"]);

    let ok = fleet_settings(&project, "1.0.0");
    let mut s = ok.clone();
    s.host = "elsewhere.example".into();
    refused(
        &project,
        &bake(&real_image("1.0.0"), &s),
        None,
        "stable",
        &["\"elsewhere.example\"", "does not cover"],
    );

    Endpoint { port: 4443, path: "/update".into() }.save(project.path()).unwrap();
    refused(&project, &bake(&real_image("1.0.0"), &ok), None, "stable", &["port 3443", "listens on 4443"]);
    Endpoint { port: 3443, path: "/ota".into() }.save(project.path()).unwrap();
    refused(&project, &bake(&real_image("1.0.0"), &ok), None, "stable", &["\"/update\"", "\"/ota\""]);
    Endpoint { port: 3443, path: "/update".into() }.save(project.path()).unwrap();
    refused(
        &project,
        &bake(&real_image("1.0.0"), &ok),
        None,
        "beta",
        &["polls channel \"stable\", not \"beta\""],
    );

    // The same image to the channel it polls goes through.
    let mut store = Store::open(project.path()).unwrap();
    let checked =
        publish::check(&store, bake(&real_image("1.0.0"), &ok), PublishRequest::sketch("stable", None))
            .unwrap();
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
    publish::check_and_publish(
        &mut store,
        bake(&real_image("1.0.0"), &ok),
        PublishRequest::sketch("stable", None),
    )
    .unwrap();
}

#[test]
fn an_image_without_trust_settings_is_published_with_a_warning() {
    let project = Project::new();
    let store = Store::open(project.path()).unwrap();
    let plain = ImageBuilder::arduino_esp8266().target_size(32 * 1024).build();
    let checked =
        publish::check(&store, plain.clone(), PublishRequest::sketch("stable", Some("1.0.0"))).unwrap();
    assert!(checked.warnings.iter().any(|w| w.contains("no readable CA")), "{:?}", checked.warnings);
}

#[test]
fn a_synthetic_build_goes_only_to_a_demo_channel() {
    let project = Project::new();
    let mut s = fleet_settings(&project, "1.1.0");
    let image = bake(&reference_image(Chip::Esp8266, "1.1.0", 64 * 1024), &s);
    refused(&project, &image, None, "stable", &["synthetic image", "demo"]);
    s.channel = otaforge_protocol::DEMO_CHANNEL.into();
    let image = bake(&reference_image(Chip::Esp8266, "1.1.0", 64 * 1024), &s);
    project.publish(&image, "1.1.0", otaforge_protocol::DEMO_CHANNEL);
}

#[test]
fn a_typed_version_that_contradicts_the_image_is_refused_with_both() {
    let project = Project::new();
    let image = bake(&real_image("1.1.0"), &fleet_settings(&project, "1.1.0"));
    refused(&project, &image, Some("2.0.0"), "stable", &["2.0.0", "1.1.0", "config block"]);
    // The CLI says the same, and the image's own version is taken when none is typed.
    let file = project.path().join("app.bin");
    std::fs::write(&file, &image).unwrap();
    let (out, _, stderr) =
        run(otaforge(project.path()).args(["publish"]).arg(&file).args(["--version", "2.0.0"]));
    assert!(!out.status.success() && stderr.contains("contradicts"), "{stderr}");
    let (out, stdout, stderr) = run(otaforge(project.path()).args(["publish"]).arg(&file));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("1.1.0"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_update_endpoint_never_serves_a_baked_password() {
    let project = Project::new();
    // The project baked a password once (into a sketch's ota_config.h, say)…
    bake_a_password(&project);
    let server = project.serve(|_| {}).await;
    let port = server.tls_addr.port();
    // …an image that holds it is refused, one that does not is served.
    let mut leaky = vec![0u8; 2048];
    leaky[10..10 + PASSWORD.len()].copy_from_slice(PASSWORD.as_bytes());
    let leaky = ImageBuilder::arduino_esp8266().segments([(0x4020_1000, leaky)]).build();
    let mut store = Store::open(project.path()).unwrap();
    assert!(
        publish::check_and_publish(
            &mut store,
            leaky.clone(),
            PublishRequest::sketch("stable", Some("2.0.0"))
        )
        .is_err()
    );
    let mut s = fleet_settings(&project, "2.0.0");
    s.port = port;
    publish::check_and_publish(
        &mut store,
        bake(&real_image("2.0.0"), &s),
        PublishRequest::sketch("stable", None),
    )
    .unwrap();
    server.reload().unwrap();
    let client = project.client(server.tls_addr);
    let headers = crate::support::esp8266_headers("5C:CF:7F:00:00:01", Some("0.1"), &"0".repeat(32));
    let resp =
        crate::support::device_get(&client, &format!("https://ota.test:{port}/update"), &headers).await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    assert!(body.len() > 1000);
    assert!(
        !body.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()),
        "the endpoint served the password"
    );
    server.shutdown().await;
}
