#!/usr/bin/env node
// Drives one herald event source through the client node-soap builds from herald's WSDL.
//
//     node tests/wsdl/node/client.js WSDL_URL --soap 11|12 --notify-to URL [--end-to URL]
//
// Subscribe -> GetStatus (2004/08 and 2011; 2004/01 has none) -> Renew -> Unsubscribe, each
// through the operations node-soap generates from the WSDL, on the port of the chosen SOAP
// version (EventSourceSoap11/12, SubscriptionManagerSoap11/12). Prints one JSON object per step
// on stdout (the same steps as tests/wsdl/zeep_client.py); any failure exits with status 1.
// tests/it/wsdl_generators.rs runs it for every WSDL herald serves, over both SOAP versions.
//
// What the script adds by hand, as WS-Addressing asks of any client:
// - node-soap picks the envelope by a client option, not by the port's binding: SOAP 1.2 needs
//   forceSoap12Headers as well as the *Soap12 port.
// - node-soap knows no WS-Addressing: a header function adds wsa:Action (the operation's
//   soapAction), wsa:MessageID and wsa:To in the version's WS-Addressing namespace.
// - node-soap decodes reference parameters into bare values ({Identifier: "uuid:…"}), losing
//   their namespace, so they are read from the raw response and echoed as XML headers on
//   GetStatus, Renew and Unsubscribe, at the SubscriptionManager's address. 2004/01 puts wse:Id
//   in the Body and manages subscriptions at the source itself.
'use strict';

const crypto = require('node:crypto');
const soap = require('soap');
const { DOMParser, XMLSerializer } = require('@xmldom/xmldom');

const WSE_2011 = 'http://www.w3.org/2011/03/ws-evt';
const WSE_2004_08 = 'http://schemas.xmlsoap.org/ws/2004/08/eventing';
const WSE_2004_01 = 'http://schemas.xmlsoap.org/ws/2004/01/eventing';
// The WS-Addressing version each eventing version's schema imports.
const WSA = {
  [WSE_2011]: 'http://www.w3.org/2005/08/addressing',
  [WSE_2004_08]: 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
  [WSE_2004_01]: 'http://schemas.xmlsoap.org/ws/2003/03/addressing',
};

function parseArgs(argv) {
  const args = { soap: '11' };
  const rest = argv.slice(2);
  while (rest.length) {
    const arg = rest.shift();
    if (arg === '--soap') args.soap = rest.shift();
    else if (arg === '--notify-to') args.notifyTo = rest.shift();
    else if (arg === '--end-to') args.endTo = rest.shift();
    else if (!args.wsdl) args.wsdl = arg;
    else throw new Error(`unexpected argument ${arg}`);
  }
  if (!args.wsdl || !args.notifyTo || !['11', '12'].includes(args.soap)) {
    throw new Error('usage: client.js WSDL_URL --soap 11|12 --notify-to URL [--end-to URL]');
  }
  return args;
}

function escapeXml(text) {
  return String(text).replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The WS-Eventing version the WSDL describes: the namespace of the schema it imports. */
function eventingNamespace(client) {
  const schemas = client.wsdl.definitions.schemas;
  const ns = [WSE_2011, WSE_2004_08, WSE_2004_01].find((candidate) => candidate in schemas);
  if (!ns) throw new Error('the WSDL imports no WS-Eventing schema');
  return ns;
}

/** wsa:Action, wsa:MessageID and wsa:To on every request, plus the echoed `references`. */
function addressingHeaders(client, wsaNs, references) {
  client.addSoapHeader((method, location, soapAction) =>
    [
      `<wsa:Action xmlns:wsa="${wsaNs}">${escapeXml(soapAction)}</wsa:Action>`,
      `<wsa:MessageID xmlns:wsa="${wsaNs}">urn:uuid:${crypto.randomUUID()}</wsa:MessageID>`,
      `<wsa:To xmlns:wsa="${wsaNs}">${escapeXml(location)}</wsa:To>`,
      ...references,
    ].join(''),
  );
}

/** Calls a generated operation; resolves to [result, raw response]. */
function call(operation, args) {
  return new Promise((resolve, reject) => {
    operation(args, (err, result, raw) => {
      if (err) {
        err.message += `\n${err.body || raw || ''}`;
        reject(err);
      } else {
        resolve([result, raw]);
      }
    });
  });
}

/** The text of a simple value or of a simpleContent value (node-soap's $value). */
function text(value) {
  return value !== null && typeof value === 'object' ? value.$value : value;
}

/** The SubscriptionManager's reference parameters (and 2004 reference properties) as XML. */
function referenceParameters(rawResponse, wseNs, wsaNs) {
  const document = new DOMParser().parseFromString(rawResponse, 'text/xml');
  const manager = document.getElementsByTagNameNS(wseNs, 'SubscriptionManager')[0];
  if (!manager) throw new Error(`no SubscriptionManager in ${rawResponse}`);
  const serializer = new XMLSerializer();
  const headers = [];
  for (const container of Array.from(manager.childNodes)) {
    const isContainer =
      container.nodeType === 1 &&
      container.namespaceURI === wsaNs &&
      ['ReferenceParameters', 'ReferenceProperties'].includes(container.localName);
    if (!isContainer) continue;
    for (const item of Array.from(container.childNodes)) {
      if (item.nodeType === 1) headers.push({ xml: serializer.serializeToString(item), text: item.textContent });
    }
  }
  return headers;
}

function step(name, fields = {}) {
  process.stdout.write(`${JSON.stringify({ step: name, ...fields })}\n`);
}

async function main() {
  const args = parseArgs(process.argv);
  const options = { forceSoap12Headers: args.soap === '12' };
  const source = await soap.createClientAsync(args.wsdl, options);
  const wseNs = eventingNamespace(source);
  const wsaNs = WSA[wseNs];
  addressingHeaders(source, wsaNs, []);
  const suffix = `Soap${args.soap}`;
  const sourcePort = source.Eventing[`EventSource${suffix}`];

  // Subscribe, in the version's shape.
  const request = {};
  if (args.endTo) request.EndTo = { Address: args.endTo };
  if (wseNs === WSE_2004_01) request.NotifyTo = { Address: args.notifyTo };
  else request.Delivery = { NotifyTo: { Address: args.notifyTo } };
  request.Expires = 'PT10M';
  const [subscribed, raw] = await call(sourcePort.SubscribeOp, request);

  let managerPort;
  let byId = {};
  let identifier;
  let address = null;
  if (wseNs === WSE_2004_01) {
    // The source is the subscription manager; the identifier travels in the Body.
    identifier = text(subscribed.Id);
    managerPort = sourcePort;
    byId = { Id: identifier };
  } else {
    address = text(subscribed.SubscriptionManager.Address);
    const references = referenceParameters(raw, wseNs, wsaNs);
    identifier = references.map((r) => r.text).join('').trim();
    const manager = await soap.createClientAsync(args.wsdl, options, address);
    addressingHeaders(manager, wsaNs, references.map((r) => r.xml));
    managerPort = manager.Eventing[`SubscriptionManager${suffix}`];
  }
  const granted = (result) => text(wseNs === WSE_2011 ? result.GrantedExpires : result.Expires);
  step('subscribe', { id: identifier, manager: address, expires: granted(subscribed) });

  if (wseNs !== WSE_2004_01) {
    const [status] = await call(managerPort.GetStatusOp, {});
    step('get_status', { expires: granted(status) });
  }

  const [renewed] = await call(managerPort.RenewOp, { ...byId, Expires: 'PT20M' });
  step('renew', { expires: granted(renewed) });

  await call(managerPort.UnsubscribeOp, byId);
  step('unsubscribe');
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
