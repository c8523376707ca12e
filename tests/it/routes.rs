//! A source's endpoints answer at its own paths and, as any path does, with its name
//! percent-encoded: herald routes each configured source by name, and every other name through
//! the routes that take it as a parameter.

use crate::harness::*;

#[tokio::test]
async fn a_source_answers_under_its_name_and_under_its_name_encoded() {
    let server = TestServer::start().await;
    for name in ["default", "def%61ult", "%64efault"] {
        let source_url = server.url(&format!("/eventing/{name}"));
        let body = subscribe_body(W3C2011, SINK, "");
        let reply = Message::new(Soap::V12, W3C2011, "Subscribe", body)
            .send(&server, &source_url)
            .await;
        assert_eq!(reply.status, 200, "Subscribe at {name}: {}", reply.text);
        assert_eq!(server.active("default").await, 1, "{name}");
        let mut managed = Managed::from_response(&server, W3C2011, &reply);
        managed.manager_url = server.url(&format!("/eventing/{name}/subscriptions"));
        let reply = managed
            .request(Soap::V12, "Renew", "<wse:Expires>PT2H</wse:Expires>")
            .send(&server, &managed.manager_url)
            .await;
        assert_eq!(reply.status, 200, "Renew at {name}: {}", reply.text);
        let reply = managed
            .request(Soap::V12, "Unsubscribe", "")
            .send(&server, &managed.manager_url)
            .await;
        assert_eq!(reply.status, 200, "Unsubscribe at {name}: {}", reply.text);
        assert_eq!(server.active("default").await, 0, "{name}");
        // The manager's path is the manager's: it takes no Subscribe.
        let body = subscribe_body(W3C2011, SINK, "");
        Message::new(Soap::V12, W3C2011, "Subscribe", body)
            .send(&server, &managed.manager_url)
            .await
            .assert_fault(Soap::V12, (WSA2005, "ActionNotSupported"), false);
        assert_eq!(server.active("default").await, 0, "{name}");
        let described = http_client()
            .get(format!("{source_url}?wsdl"))
            .send()
            .await
            .unwrap();
        assert_eq!(described.status(), 200, "{name}?wsdl");
        let wsdl = described.text().await.unwrap();
        assert!(
            wsdl.contains("/eventing/default/subscriptions"),
            "the WSDL of {name} names the source's manager"
        );
    }
}
