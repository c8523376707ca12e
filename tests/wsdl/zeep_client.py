#!/usr/bin/env python3
"""Drives one herald event source through the client zeep generates from herald's WSDL.

    python3 tests/wsdl/zeep_client.py WSDL_URL --soap 11|12 --notify-to URL [--end-to URL]

Subscribe -> GetStatus (2004/08 and 2011; 2004/01 has none) -> Renew -> Unsubscribe, each through
the generated operations. Prints one JSON object per step on stdout; any failure raises (exit
status 1). tests/it/wsdl.rs runs it for every WSDL herald serves, over both SOAP versions.

What the Python side adds by hand, as WS-Addressing asks of any client:
- 2011: nothing; zeep sends WS-Addressing 1.0 headers itself (the WSDL's wsam:Action).
- 2004/08 and 2004/01: a small plugin adds wsa:Action, wsa:MessageID and wsa:To in the version's
  WS-Addressing namespace (zeep knows only 1.0); herald would take the action from SOAPAction or
  the SOAP 1.2 action parameter without them.
- 2004/08 and 2011: the SubscriptionManager's reference parameters are echoed as SOAP headers
  (_soapheaders) on Renew, GetStatus and Unsubscribe. 2004/01 puts wse:Id in the Body.
"""

import argparse
import json
import sys
import uuid

from lxml import etree
from zeep import Client, Plugin
from zeep.exceptions import Error as ZeepError
from zeep.wsdl.utils import get_or_create_header

WSE_2011 = "http://www.w3.org/2011/03/ws-evt"
WSE_2004_08 = "http://schemas.xmlsoap.org/ws/2004/08/eventing"
WSE_2004_01 = "http://schemas.xmlsoap.org/ws/2004/01/eventing"
# The WS-Addressing version each eventing version's schema imports.
WSA = {
    WSE_2011: "http://www.w3.org/2005/08/addressing",
    WSE_2004_08: "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    WSE_2004_01: "http://schemas.xmlsoap.org/ws/2003/03/addressing",
}


class Addressing(Plugin):
    """wsa:Action, wsa:MessageID and wsa:To in a WS-Addressing version zeep does not know."""

    def __init__(self, wsa_ns):
        self.wsa_ns = wsa_ns

    def egress(self, envelope, http_headers, operation, binding_options):
        header = get_or_create_header(envelope)
        for name, text in (
            ("Action", operation.soapaction),
            ("MessageID", "urn:uuid:" + str(uuid.uuid4())),
            ("To", binding_options["address"]),
        ):
            element = etree.SubElement(header, etree.QName(self.wsa_ns, name))
            element.text = text
        return envelope, http_headers


def eventing_namespace(client):
    """The WS-Eventing version the WSDL describes: the namespace its schema defines Subscribe in."""
    for ns in (WSE_2011, WSE_2004_08, WSE_2004_01):
        try:
            client.get_element(etree.QName(ns, "Subscribe").text)
            return ns
        except (LookupError, ZeepError):
            continue
    raise SystemExit("the WSDL defines no wse:Subscribe")


def text(value):
    """The text of a simple value or of a simpleContent value (zeep's _value_1)."""
    return getattr(value, "_value_1", value)


def reference_parameters(epr, wsa_ns):
    """An EPR's reference parameters (and 2004 reference properties) as header elements."""
    headers = []
    for field in ("ReferenceParameters", "ReferenceProperties"):
        container = getattr(epr, field, None) if field in epr else None
        for item in (container and container["_value_1"]) or []:
            if isinstance(item, etree._Element):
                headers.append(item)
            else:
                raise SystemExit(f"unexpected reference parameter {item!r}")
    return headers


def step(name, **fields):
    print(json.dumps({"step": name, **fields}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("wsdl")
    parser.add_argument("--soap", choices=["11", "12"], default="11")
    parser.add_argument("--notify-to", required=True)
    parser.add_argument("--end-to")
    args = parser.parse_args()

    probe = Client(args.wsdl)
    ns = eventing_namespace(probe)
    wsa_ns = WSA[ns]
    plugins = [] if ns == WSE_2011 else [Addressing(wsa_ns)]
    client = Client(args.wsdl, plugins=plugins)
    soap = "Soap" + args.soap
    source = client.bind("Eventing", "EventSource" + soap)

    # Subscribe, in the version's shape.
    request = {"Expires": "PT10M"}
    if ns == WSE_2004_01:
        request["NotifyTo"] = {"Address": args.notify_to}
    else:
        request["Delivery"] = {"NotifyTo": {"Address": args.notify_to}}
    if args.end_to:
        request["EndTo"] = {"Address": args.end_to}
    response = source.SubscribeOp(**request)

    if ns == WSE_2004_01:
        # The source is the subscription manager; the identifier travels in the Body.
        identifier = response.Id
        manager, address, headers = source, None, []
        expires = text(response.Expires)
        by_id = {"Id": identifier}
    else:
        epr = response.SubscriptionManager
        address = text(epr.Address)
        headers = reference_parameters(epr, wsa_ns)
        identifier = "".join(h.text or "" for h in headers).strip()
        binding = etree.QName(client.wsdl.services["Eventing"].ports[
            "SubscriptionManager" + soap].binding.name).text
        manager = client.create_service(binding, address)
        expires = text(response.GrantedExpires if ns == WSE_2011 else response.Expires)
        by_id = {}
    step("subscribe", id=identifier, manager=address, expires=expires)

    if ns != WSE_2004_01:
        status = manager.GetStatusOp(_soapheaders=headers)
        granted = status.GrantedExpires if ns == WSE_2011 else status.Expires
        step("get_status", expires=text(granted))

    renewed = manager.RenewOp(Expires="PT20M", _soapheaders=headers, **by_id)
    granted = renewed.GrantedExpires if ns == WSE_2011 else renewed.Expires
    step("renew", expires=text(granted))

    manager.UnsubscribeOp(_soapheaders=headers, **by_id)
    step("unsubscribe")


if __name__ == "__main__":
    sys.exit(main())
