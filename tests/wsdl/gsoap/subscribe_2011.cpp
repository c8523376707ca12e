// A W3C WS-Eventing 2011 Subscribe through the client code gSOAP generates from herald's WSDL
// (wsdl2h -o out.h URL?wsdl; soapcpp2 -C -L -x -I<import> out.h), built by
// tests/it/wsdl_generators.rs with g++ and libgsoap++.
//
//     subscribe_2011 SOURCE_URL NOTIFY_TO 11|12
//
// Prints the granted expiry and the SubscriptionManager's address and reference parameters, one
// `name value` line each; exits 1 with gSOAP's fault on failure. wsdl2h collects both bindings
// into one service whose namespace table is SOAP 1.2's (soap_set_version does not stick: the
// call resets it from the table), so SOAP 1.1 takes a copy of the table with the SOAP 1.1
// envelope and encoding namespaces. gSOAP
// sends the binding's SOAPAction (or the SOAP 1.2 action parameter); herald takes the action
// from there, so no WS-Addressing plugin is needed for this one request.
#include <cstdio>
#include <cstring>
#include <vector>

#include "soapH.h"
#include "EventSourceSoap11.nsmap"

int main(int argc, char **argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s SOURCE_URL NOTIFY_TO 11|12\n", argv[0]);
        return 2;
    }
    struct soap *soap = soap_new();
    std::vector<Namespace> soap11(namespaces, namespaces + sizeof namespaces / sizeof *namespaces);
    if (std::strcmp(argv[3], "11") == 0) {
        soap11[0].ns = "http://schemas.xmlsoap.org/soap/envelope/";
        soap11[0].in = "http://www.w3.org/2003/05/soap-envelope";
        soap11[1].ns = "http://schemas.xmlsoap.org/soap/encoding/";
        soap11[1].in = "http://www.w3.org/2003/05/soap-encoding";
        soap_set_namespaces(soap, soap11.data());
    }

    wsa5__EndpointReferenceType notify_to;
    soap_default_wsa5__EndpointReferenceType(soap, &notify_to);
    notify_to.Address = argv[2];
    ns2__DeliveryType *delivery = soap_new_ns2__DeliveryType(soap);
    delivery->NotifyTo = &notify_to;
    ns2__ExpirationType *expires = soap_new_ns2__ExpirationType(soap);
    expires->__item = "PT10M";
    _ns2__Subscribe request;
    request.Delivery = delivery;
    request.Expires = expires;
    _ns2__SubscribeResponse response;

    int status = soap_call___ns1__SubscribeOp(soap, argv[1], nullptr, &request, response);
    if (status != SOAP_OK) {
        soap_print_fault(soap, stderr);
        soap_destroy(soap);
        soap_end(soap);
        soap_free(soap);
        return 1;
    }
    std::printf("expires %s\n",
                response.GrantedExpires ? response.GrantedExpires->__item.c_str() : "");
    std::printf("manager %s\n",
                response.SubscriptionManager.Address ? response.SubscriptionManager.Address : "");
    const wsa5__ReferenceParametersType *references =
        response.SubscriptionManager.ReferenceParameters;
    for (int i = 0; references && i < references->__size; i++) {
        std::printf("reference %s\n", references->__any[i]);
    }
    soap_destroy(soap);
    soap_end(soap);
    soap_free(soap);
    return 0;
}
